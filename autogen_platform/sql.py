"""Names for the few statements written by hand on hot paths (each says why it is written out): the models' own
tables and columns, quoted as the connection's backend quotes them, so that a renamed field is followed."""


class Names:
    def __init__(self, connection):
        self.quote = connection.ops.quote_name

    def table(self, model) -> str:
        return self.quote(model._meta.db_table)

    def col(self, model, name: str) -> str:
        return self.quote(model._meta.get_field(name).column)

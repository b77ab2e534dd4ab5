"""A module that a hostile component document names as its provider. Importing it is the harm the
platform must never do (AgentChat's load_component would import it): tests check it stays unimported."""
IMPORTED = True


class Boom:
    pass

"""Prices of a model configuration in a declarative spec (`price_prompt_per_million`,
`price_completion_per_million`): read from a spec with errors that name the path, and written
back as plain numbers. The same rules as the API's fields: optional, not negative, at most
4 decimal places and 12 digits (ModelConfig's DecimalFields)."""
from decimal import Decimal, InvalidOperation

PRICE_KEYS = ("price_prompt_per_million", "price_completion_per_million")
MAX_DIGITS, DECIMAL_PLACES = 12, 4


def price_from_spec(problems, path: str, value) -> Decimal | None:
    """A spec's price (a number, or a string holding one) as a Decimal; None when absent or invalid."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        problems.add(path, "must be a number (price of one million tokens), or null for no price")
        return None
    try:
        # through str: a YAML float 0.15 is the Decimal 0.15, not its binary approximation
        price = Decimal(str(value).strip())
    except InvalidOperation:
        problems.add(path, "must be a number (price of one million tokens), or null for no price")
        return None
    if not price.is_finite():
        problems.add(path, "must be a finite number")
        return None
    if price < 0:
        problems.add(path, "must not be negative")
        return None
    exponent = price.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -DECIMAL_PLACES:
        problems.add(path, f"at most {DECIMAL_PLACES} decimal places")
        return None
    if price >= Decimal(10) ** (MAX_DIGITS - DECIMAL_PLACES):
        problems.add(path, f"at most {MAX_DIGITS - DECIMAL_PLACES} digits before the decimal point")
        return None
    return price


def prices_from_spec(problems, path: str, item: dict) -> dict:
    return {key: price_from_spec(problems, f"{path}.{key}", item.get(key)) for key in PRICE_KEYS}


def prices_of(model_config) -> dict:
    """The stored prices, compared with a spec's (Decimal equality ignores trailing zeros)."""
    return {key: getattr(model_config, key) for key in PRICE_KEYS}


def prices_for_spec(model_config) -> dict:
    """The prices a configuration has, as numbers for YAML/JSON (an int when whole: `1000`, not `1000.0000`)."""
    out = {}
    for key in PRICE_KEYS:
        price = getattr(model_config, key)
        if price is not None:
            price = price.normalize()
            out[key] = int(price) if price == price.to_integral_value() else float(price)
    return out

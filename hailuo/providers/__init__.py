"""Provider dialects, one module per provider; ``dialect_for`` picks one."""

from hailuo.capabilities import Provider
from hailuo.providers.apimart import ApimartDialect
from hailuo.providers.base import Dialect
from hailuo.providers.minimax import MinimaxDialect

DEFAULT_BASE_URLS: dict[Provider, str] = {
    Provider.APIMART: "https://api.apimart.ai",
    Provider.MINIMAX: "https://api.minimax.io",
}

#: Header the local simulator puts on every answer, so results say ``simulated`` truthfully
#: whichever way the simulator was reached (embedded, ``hailuo sim``, a credentials block).
SIMULATOR_HEADER = "X-Hailuo-Simulator"

_DIALECTS: dict[Provider, Dialect] = {
    Provider.APIMART: ApimartDialect(),
    Provider.MINIMAX: MinimaxDialect(),
}


def dialect_for(provider: Provider | str) -> Dialect:
    return _DIALECTS[Provider(provider)]


__all__ = ["DEFAULT_BASE_URLS", "SIMULATOR_HEADER", "Dialect", "dialect_for"]

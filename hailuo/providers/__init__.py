"""Provider dialects, one module per provider; ``dialect_for`` picks one."""

from hailuo.capabilities import Provider, is_h3
from hailuo.providers.apimart import ApimartDialect
from hailuo.providers.base import Dialect
from hailuo.providers.minimax import MinimaxDialect
from hailuo.providers.minimax_v2 import V2_DIALECT, MinimaxV2Dialect

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


def v2_dialect_for(provider: Provider | str, model: str | None) -> MinimaxV2Dialect | None:
    """MiniMax's video v2 dialect when ``model`` is an H3 model on MiniMax, else None (the
    provider's v1 dialect applies). H3 on APIMart is refused by validation, not routed."""
    if Provider(provider) is Provider.MINIMAX and is_h3(model):
        return V2_DIALECT
    return None


__all__ = ["DEFAULT_BASE_URLS", "SIMULATOR_HEADER", "Dialect", "MinimaxV2Dialect",
           "dialect_for", "v2_dialect_for"]

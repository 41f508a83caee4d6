"""The flow process's one callback receiver, started on first use and stopped at exit.

Why one per process: every waiting task of a run (a batch has many) registers its task id
with the same receiver, and the provider gets one URL. Settings come from the first
caller or the environment: ``HAILUO_CALLBACK_HOST`` (default 127.0.0.1),
``HAILUO_CALLBACK_PORT`` (default a free port), ``HAILUO_CALLBACK_PUBLIC_URL`` (what the
provider should call, e.g. a tunnel), ``HAILUO_CALLBACK_TOKEN`` (shared secret).
"""

from __future__ import annotations

import atexit
import os
import threading

from hailuo.callbacks import CallbackReceiver

_lock = threading.Lock()
_receiver: CallbackReceiver | None = None


def shared_receiver(public_url: str | None = None) -> CallbackReceiver:
    global _receiver
    with _lock:
        if _receiver is None:
            receiver = CallbackReceiver(
                host=os.environ.get("HAILUO_CALLBACK_HOST", "127.0.0.1"),
                port=int(os.environ.get("HAILUO_CALLBACK_PORT", "0")),
                public_url=public_url or os.environ.get("HAILUO_CALLBACK_PUBLIC_URL"),
                token=os.environ.get("HAILUO_CALLBACK_TOKEN"),
            )
            receiver.start()
            atexit.register(receiver.stop)
            _receiver = receiver
        return _receiver

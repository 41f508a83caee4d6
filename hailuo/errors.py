"""One typed error hierarchy for everything that can go wrong talking to Hailuo.

Why a hierarchy: callers (Prefect tasks, the CLI) decide what to do from the *type*
and the ``retryable`` flag, never by parsing messages. Why the constructor shape
``__init__(self, message, **optional)``: Prefect persists exceptions with failed
states, so every error must pickle. No error ever carries the API key: messages are
built from provider answers and our own text, and the client scrubs the key from
anything it quotes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hailuo import redact


class HailuoError(Exception):
    """Base class. ``retryable`` says whether the same call may simply be tried again."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        task_id: str | None = None,
        **details: Any,
    ) -> None:
        # Messages quote provider answers: never let a key this process uses ride along.
        message = redact.scrub(message)
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.task_id = task_id
        self.details = details

    def __reduce__(self):  # keyword-only arguments do not survive default pickling
        return (_rebuild, (type(self), self.message, self._kwargs()))

    def _kwargs(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "http_status": self.http_status,
            "task_id": self.task_id,
            **self.details,
        }

    def __str__(self) -> str:
        extras = []
        if self.code is not None:
            extras.append(f"code={self.code}")
        if self.http_status is not None:
            extras.append(f"http={self.http_status}")
        if self.task_id:
            extras.append(f"task_id={self.task_id}")
        return f"{self.message} ({', '.join(extras)})" if extras else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


def _rebuild(cls: type[HailuoError], message: str, kwargs: dict[str, Any]) -> HailuoError:
    return cls(message, **kwargs)


class InvalidRequestError(HailuoError, ValueError):
    """The request is invalid; raised locally before any network call when we can tell.

    ``field`` names the offending field and ``allowed`` lists what would be accepted.
    """

    def __init__(self, message: str, *, field: str | None = None, **kw: Any) -> None:
        if field and not message.startswith(field):
            message = f"{field}: {message}"  # every message names its field first
        super().__init__(message, field=field, **kw)
        self.field = field


class InvalidImageError(InvalidRequestError):
    """An image input failed a check (format, size, short edge, aspect ratio)."""


class AuthenticationError(HailuoError):
    """Key missing, wrong or for the other host (401, codes 1004 / 2049)."""


class InsufficientBalanceError(HailuoError):
    """The account cannot pay (402, code 1008, 2056 usage limit)."""


class ContentRejectedError(HailuoError):
    """Input or output judged sensitive (1026 / 1027). Never resubmitted automatically."""


class RateLimitedError(HailuoError):
    """Too many requests (429, codes 1002 / 1039 / 1041 / 2045). Safe to retry later."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, retry_after=retry_after, **kw)
        self.retry_after = retry_after


class ProviderUnavailableError(HailuoError):
    """The provider failed on its side (5xx, 408, codes 1000 / 1001 / 1024 / 1033)."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, retry_after=retry_after, **kw)
        self.retry_after = retry_after


class GenerationFailedError(HailuoError):
    """The provider accepted the task, then reported it failed or cancelled.

    ``task_id`` is always set. Whether a *new* submit is sensible is a policy
    decision for the caller (see ``resubmittable``).
    """

    @property
    def resubmittable(self) -> bool:
        return self.code not in (1026, 1027, 2013, 1008, 1004, 2049)


class AmbiguousSubmitError(HailuoError):
    """The submit POST may or may not have reached the provider and no task id came back.

    It is *not* retried automatically: a blind retry is how users got billed twice.
    ``idempotency_key`` and ``request_fingerprint`` are what is needed to reconcile:
    resending with the same ``Idempotency-Key`` is safe only where the provider confirmed
    it honours the key for the model (APIMart's model schema); otherwise check the
    provider console (or list the account's recent tasks) before resubmitting.
    """


class LinkExpiredError(HailuoError):
    """A signed download link expired (403 / 410). A fresh link can be fetched by task id."""

    retryable = True


class DownloadError(HailuoError):
    """A download broke off or came back incomplete."""

    retryable = True


class InvalidVideoError(HailuoError):
    """A downloaded file is not a decodable video (zero bytes, truncated, wrong format)."""

    retryable = True


class TimedOutError(HailuoError):
    """Waiting ran past its total timeout. ``task_id`` is kept so the wait can be resumed."""

    retryable = True


class ConfigurationError(HailuoError, ValueError):
    """Something the operator must set up (a block, a file, a folder) is missing or wrong:
    found before anything is paid, and never retried."""


class CostLimitExceededError(InvalidRequestError):
    """The cost estimate exceeds the caller's ``max_cost_usd``: refused before any submit."""


# -- many clips ------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipFailure:
    """One failed clip of a multi-clip run: its 1-based ``number``, its ``name`` and the
    typed exception it ended with (which keeps its own ``task_id``)."""

    number: int
    name: str | None
    error: Exception

    @property
    def task_id(self) -> str | None:
        return getattr(self.error, "task_id", None)

    @property
    def summary(self) -> str:
        """``Type: message``, one line, naming the task id when one is known."""
        text = " ".join(str(self.error).split())
        if self.task_id and self.task_id not in text:
            text += f" (task_id={self.task_id})"
        return f"{type(self.error).__name__}: {text}"

    def describe(self, total: int | None) -> str:
        of = f" of {total}" if total else ""
        name = f" ({self.name})" if self.name else ""
        return f"clip {self.number}{of} failed{name}: {self.summary}"


#: Which clip's error stands for a whole failed run (exit code, task id), most urgent
#: first. The order is what the person reading that single answer must deal with before a
#: re-run is safe and useful: an ambiguous submit may already be paid (check the console,
#: or pay twice); an account problem stops every clip until fixed; a refusal or a bad
#: request or setup fails again unchanged; a failed generation was already resubmitted by
#: policy; an unknown error (a bug) needs a look; unavailability is what waiting and
#: re-running fixes, and a timeout comes last because re-running simply resumes the paid
#: task. Ties go to the lowest clip number.
_PRECEDENCE: tuple[tuple[type[BaseException], ...], ...] = (
    (AmbiguousSubmitError,),
    (AuthenticationError, InsufficientBalanceError),
    (ContentRejectedError, InvalidRequestError, ConfigurationError),
    (GenerationFailedError,),
    (),  # anything not named here
    (RateLimitedError, ProviderUnavailableError, LinkExpiredError, DownloadError,
     InvalidVideoError),
    (TimedOutError,),
)
_UNKNOWN_RANK = 4


def _rank(error: BaseException) -> int:
    if isinstance(error, ClipsFailedError):
        return _rank(error.representative.error)
    for rank, classes in enumerate(_PRECEDENCE):
        if classes and isinstance(error, classes):
            return rank
    return _UNKNOWN_RANK


class ClipsFailedError(HailuoError, ExceptionGroup):
    """Some clips of a batch or film failed; the others finished and are kept for a re-run.

    Also an ``ExceptionGroup`` of the clips' own typed errors (``.exceptions``, so
    ``except* TimedOutError`` works and tracebacks show every clip). ``failures`` adds each
    clip's number and name, ``kept`` lists the numbers of the clips that finished, and
    ``representative`` is the failure that stands for the run (see ``_PRECEDENCE``): its
    ``task_id`` is this error's ``task_id``. Never ``retryable`` as a whole: a re-run of
    the flow redoes only what did not finish.

    Build it with ``ClipsFailedError.of(failures, total=..., kept=...)``, which writes the
    message naming every failed clip with its error and task id.
    """

    retryable = False

    def __new__(cls, message: str, *, failures: list[ClipFailure], **_: Any):
        return super().__new__(cls, message, [f.error for f in failures])

    def __init__(
        self,
        message: str,
        *,
        failures: list[ClipFailure],
        kept: list[int] | tuple[int, ...] = (),
        total: int | None = None,
        code: int | None = None,
        http_status: int | None = None,
        task_id: str | None = None,
        **details: Any,
    ) -> None:
        # Not HailuoError.__init__: ExceptionGroup owns ``message`` (read-only) and args.
        ExceptionGroup.__init__(self, message, [f.error for f in failures])
        self.failures = list(failures)
        self.kept = list(kept)
        self.total = total
        self.code = code
        self.http_status = http_status
        self.task_id = task_id if task_id is not None else self.representative.task_id
        self.details = {"failures": self.failures, "kept": self.kept, "total": total,
                        **details}

    @classmethod
    def of(cls, failures: list[ClipFailure], *, total: int | None = None,
           kept: list[int] | tuple[int, ...] = ()) -> ClipsFailedError:
        text = "; ".join(f.describe(total) for f in failures)
        done = ", ".join(str(n) for n in kept) or "none"
        return cls(f"{text}. Done and kept for a re-run: clips {done}.", failures=failures,
                   kept=kept, total=total)

    @property
    def representative(self) -> ClipFailure:
        """The failure that stands for the run (its exit code, its task id)."""
        return min(self.failures, key=lambda f: (_rank(f.error), f.number))

    def __str__(self) -> str:  # the message already names every clip's task id
        return self.message


class ResultMissingError(HailuoError):
    """The provider says the task finished but gave no way to fetch the video (MiniMax
    ``Success`` without ``file_id``, a file answer without ``download_url``, APIMart
    ``completed`` without a URL). ``task_id`` is always set.

    Retryable in the sense that asking again is free (a later status may carry the link);
    never a reason to submit again: the task exists and may have been paid for.
    """

    retryable = True


# -- hostile or broken answers (issue 13, part C) ---------------------------------------
class ProviderAnswerError(HailuoError):
    """An answer broke a rule that keeps us safe: an id unfit for a URL or a file name, a
    status for another task, a body too large, too deep or undecodable, a download that
    would go to a private address or inflate without bound. Not retryable unless a
    subclass says so: a hostile answer is not a transient one."""


class UnsafeIdError(ProviderAnswerError):
    """A task id or file id that cannot be used as a URL segment or a file name.
    ``raw_id`` (in ``details``) is the id as sent, truncated and made printable."""


class TaskIdMismatchError(ProviderAnswerError):
    """A status answer named another task than the one asked for; ``task_id`` is the one
    asked for and ``answered_id`` (in ``details``) what came back, truncated."""


class AnswerTooLargeError(ProviderAnswerError):
    """A status answer (or callback body) beyond its size cap."""


class UnreadableAnswerError(ProviderAnswerError):
    """An answer that could not be decoded: not JSON, nested absurdly deep, broken
    compression. Retryable for status calls: asking again is free."""

    retryable = True


class DownloadRefusedError(ProviderAnswerError):
    """A download refused before or while it was written: a private, loopback or
    link-local target, a redirect loop, more bytes than allowed, or a compressed body
    inflating far beyond what came over the wire (a decompression bomb)."""


class StatusDeadlineError(ProviderUnavailableError):
    """A status call (or a file lookup) ran past its total wall-clock deadline, whatever
    the server trickled meanwhile. Retryable: the next poll starts a fresh deadline."""


class DownloadDeadlineError(DownloadError):
    """A download ran past its total wall-clock deadline (trickled or stalled)."""


class RequestRefusedError(HailuoError):
    """The provider answered that it did not carry out the request, and said why
    (APIMart ``{"success": false, "message": ...}`` inside an HTTP 2xx). A definite answer:
    nothing was created, so it is not ambiguous; not retried automatically either, since
    only the message says whether trying later could help."""

"""What a person (or an Automation) sees of a finished clip or film: keyed artifacts with a
visible preview, and Prefect events.

Artifacts
    Per clip a markdown artifact keyed ``hailuo-clip-<batch or film>-<clip>`` (single clips:
    ``hailuo-clip-<clip>``), per film ``hailuo-film-<film>``: the key gives the clip's or
    film's history across runs in the UI's Artifacts page. Each shows the thumbnail (clip)
    or poster (film): from S3 through a presigned URL when the destination has a bucket,
    otherwise embedded as a small JPEG ``data:`` URL (at most ``PREVIEW_MAX_BYTES``).
    Prefect's UI renders those: the default (V2) UI's markdown renderer lets ``data:image/``
    through on ``img src`` (its ``urlTransform`` and the ``rehype-sanitize`` schema both
    allow it) and the V1 UI passes an image's ``src`` through unchanged;
    ``tests/test_artifacts_outputs.py`` checks the installed bundles for that.
    Links are presigned S3 URLs, and their text is the file's own name (the presigned URL
    asks S3 to serve it under that name); without a bucket there is no link at all (a
    ``file://`` link opens nothing in a browser, and the file is on the worker, not the
    viewer's machine): the artifact says which file, on which host, at which path.

Events
    ``hailuo.clip.completed`` / ``hailuo.clip.failed`` with the clip as resource
    (``hailuo.clip.<task id>``) and ``hailuo.film.completed`` / ``hailuo.film.failed``
    with the film (``hailuo.film.<film slug>``); the payload holds the task id, cost, URI
    and where the file is, never a key or a presigned URL (a presigned URL is a bearer
    credential for the object). Prefect adds the flow run, task run, flow and deployment
    as related resources. README "Automations" shows a trigger that starts a follow-up
    deployment on them.
"""

from __future__ import annotations

import base64
import contextlib
import io
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from hailuo.files import DEFAULT_GROUP, slug
from prefect_hailuo.flows.models import ClipResult, ClipSpec

#: Largest embedded preview (JPEG bytes, before base64): small enough for the artifact
#: store and the page, large enough to recognise the shot.
PREVIEW_MAX_BYTES = 40_000
PREVIEW_WIDTHS = (320, 240, 160, 120)

CLIP_COMPLETED = "hailuo.clip.completed"
CLIP_FAILED = "hailuo.clip.failed"
FILM_COMPLETED = "hailuo.film.completed"
FILM_FAILED = "hailuo.film.failed"


def hostname() -> str:
    return socket.gethostname() or "localhost"


def clip_label(spec: ClipSpec) -> str:
    """What a clip is called in files, artifacts and events: its name, else the first
    words of its prompt (camera brackets left out), else ``clip``."""
    return slug(spec.name or spec.prompt)


def artifact_key(kind: str, *parts: str | None) -> str:
    """``hailuo-<kind>-<part>-...``: lowercase letters, digits and dashes, as Prefect
    requires of artifact keys; empty parts are left out."""
    words = [slug(p, max_chars=60) for p in parts if p]
    return "-".join(["hailuo", kind, *words])[:120].rstrip("-")


def preview_data_url(image: str | Path, max_bytes: int = PREVIEW_MAX_BYTES) -> str | None:
    """A small JPEG of ``image`` as a ``data:`` URL (``None`` if it cannot be read)."""
    from PIL import Image

    try:
        with Image.open(image) as opened:
            picture = opened.convert("RGB")
    except OSError:
        return None
    for width in PREVIEW_WIDTHS:
        small = picture.copy()
        small.thumbnail((width, width * 4))
        for quality in (80, 65, 50):
            buffer = io.BytesIO()
            small.save(buffer, format="JPEG", quality=quality, optimize=True)
            if buffer.tell() <= max_bytes:
                return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
    return None


def _cell(text: Any) -> str:
    """Plain text safe inside a markdown table cell or link text."""
    return (str(text).replace("\\", "\\\\").replace("|", "\\|").replace("[", "\\[")
            .replace("]", "\\]").replace("\n", " "))


def _where(local_path: str, s3_uri: str | None, host: str | None) -> str:
    if s3_uri:
        return f"`{s3_uri}`"
    return f"host `{host or hostname()}`, `{Path(local_path).resolve()}`"


def _file_line(name: str, url: str | None, local_path: str, s3_uri: str | None,
               host: str | None) -> str:
    if url:
        return f"**[{_cell(name)}]({url})** (presigned S3 link, `{s3_uri}`)"
    return (f"**{_cell(name)}** is on host `{host or hostname()}` at "
            f"`{Path(local_path).resolve()}` (not uploaded: the destination names no S3 "
            "bucket block)")


def _preview(alt: str, url: str | None, still: str | None) -> str:
    source = url or (preview_data_url(still) if still else None)
    return f"![{_cell(alt)}]({source})\n\n" if source else ""


def publish_clip(result: ClipResult, group: str | None) -> str:
    """The clip's keyed markdown artifact; returns the key."""
    label = result.label or slug(result.name or result.prompt)
    name = Path(result.local_path).name
    key = artifact_key("clip", None if group == DEFAULT_GROUP else group, label)
    rows = [
        ("file", _file_line(name, result.presigned_url, result.local_path, result.s3_uri,
                            result.host)),
        ("status", "completed" + (" (simulated: nothing paid)" if result.simulated else "")),
        ("duration", f"{result.duration:.1f} s"),
        ("resolution", f"{result.resolution} ({result.width}x{result.height})"),
        ("cost", f"${result.cost_usd:.2f} (estimate)"),
        ("model", f"{result.model} on {result.provider}"),
        ("task", f"`{result.task_id}`"),
        ("manifest", f"`{result.manifest_uri}`" if result.manifest_uri
         else _where(result.manifest_path, None, result.host)),
        ("prompt", _cell(result.prompt or "")),
    ]
    body = (f"### {_cell(result.name or label)}\n\n"
            + _preview(Path(result.thumbnail_path or name).name, result.thumbnail_url,
                       result.thumbnail_path)
            + "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n")
    create_markdown_artifact(body, key=key, description=f"clip {result.name or label}: "
                             f"{name}, {result.duration:.1f} s {result.resolution}, "
                             f"${result.cost_usd:.2f}")
    return key


def publish_clip_table(results: Sequence[ClipResult], title: str, *,
                       failed: Sequence[tuple[str, str]] = (), key: str | None = None) -> None:
    """The run's table: one row per clip (finished, then failed) with readable columns."""
    rows = [{
        "clip": r.name or r.label or r.task_id, "status": "completed",
        "duration": f"{r.duration:.1f} s", "resolution": r.resolution,
        "cost": f"${r.cost_usd:.2f}", "file": Path(r.local_path).name,
        "where": r.s3_uri or f"{r.host or hostname()}:{Path(r.local_path).resolve()}",
    } for r in results]
    rows += [{"clip": name, "status": f"failed: {error}"[:300], "duration": "",
              "resolution": "", "cost": "", "file": "", "where": ""} for name, error in failed]
    total = sum(r.cost_usd for r in results)
    create_table_artifact(rows, key=key, description=f"{title}: {len(results)} clip(s) "
                          f"finished{f', {len(failed)} failed' if failed else ''}, "
                          f"estimated ${total:.2f}")


def publish_film(result: Any, manifest: dict[str, Any], slug_: str) -> str:
    """The film's keyed markdown artifact (``FilmResult``); returns the key."""
    key = artifact_key("film", slug_)
    name = Path(result.video_path).name
    segments = "\n".join(
        f"| {s['index']:03d} | {_cell(s['name'])} | {s['first_frame']['source'] or 'text'} | "
        f"{s['duration']:.1f} s | {s['resolution']} | ${s['cost_usd']} | "
        f"{Path(s['local_path']).name} |" for s in manifest["segments"])
    sheet = (f"Contact sheet: [{Path(result.contact_sheet_path).name}]"
             f"({result.contact_sheet_url})\n\n" if result.contact_sheet_url else
             f"Contact sheet: {_where(result.contact_sheet_path, None, None)}\n\n")
    body = (
        f"# {_cell(result.title)}\n\n"
        + _preview(Path(result.poster_path).name, result.poster_url, result.poster_path)
        + _file_line(name, result.presigned_url, result.video_path, result.s3_uri, None)
        + f"\n\n{result.duration:.2f} s, {result.width}x{result.height}, "
        f"{len(result.clips)} clips joined by **{result.stitch_method}** "
        f"({_cell(result.stitch_reason)}); estimated **${manifest['total_cost_usd']}**"
        f"{' (simulated: nothing paid)' if result.simulated else ''}\n\n"
        "| clip | name | first frame | duration | resolution | cost | file |\n"
        f"|---|---|---|---|---|---|---|\n{segments}\n\n" + sheet
        + f"Manifest: `{result.manifest_uri or Path(result.manifest_path).resolve()}`\n")
    create_markdown_artifact(body, key=key, description=f"film {result.title}: {name}, "
                             f"{result.duration:.1f} s, {len(result.clips)} clips")
    return key


# -- events ------------------------------------------------------------------------------
def _emit(event: str, resource: dict[str, str], payload: dict[str, Any]) -> None:
    """Emit a Prefect event; never fails the run (events are a notification, not a
    result)."""
    try:
        from prefect.events import emit_event

        emit_event(event=event, resource=resource,
                   payload={k: v for k, v in payload.items() if v is not None})
    except Exception:  # noqa: BLE001 - a lost notification must not lose a paid clip
        from prefect import get_run_logger

        with contextlib.suppress(Exception):  # outside a run there is nothing to log to
            get_run_logger().warning("could not emit the %s event", event, exc_info=True)


def clip_resource(task_id: str | None, label: str) -> dict[str, str]:
    return {"prefect.resource.id": f"hailuo.clip.{task_id or 'unsubmitted-' + label}",
            "prefect.resource.name": label, "prefect.resource.role": "clip"}


def emit_clip_completed(result: ClipResult, group: str | None, *, new_submit: bool) -> None:
    label = result.label or slug(result.name or result.prompt)
    _emit(CLIP_COMPLETED, {**clip_resource(result.task_id, label),
                           "hailuo.provider": str(result.provider), "hailuo.model": result.model},
          {"task_id": result.task_id, "name": result.name or label, "group": group,
           "provider": str(result.provider), "model": result.model,
           "resolution": result.resolution, "duration": round(result.duration, 3),
           "cost_usd": result.cost_usd, "uri": result.s3_uri or str(
               Path(result.local_path).resolve()), "s3_uri": result.s3_uri,
           "local_path": str(Path(result.local_path).resolve()), "host": result.host,
           "manifest_uri": result.manifest_uri or str(Path(result.manifest_path).resolve()),
           "sha256": result.sha256, "simulated": result.simulated, "new_submit": new_submit})


def emit_clip_failed(label: str, group: str | None, error: BaseException,
                     task_id: str | None, *, provider: str | None = None,
                     model: str | None = None) -> None:
    _emit(CLIP_FAILED, clip_resource(task_id, label),
          {"task_id": task_id, "name": label, "group": group, "provider": provider,
           "model": model, "error_type": type(error).__name__,
           "error": " ".join(str(error).split())[:500], "host": hostname()})


def film_resource(slug_: str, title: str) -> dict[str, str]:
    return {"prefect.resource.id": f"hailuo.film.{slug_}", "prefect.resource.name": title,
            "prefect.resource.role": "film"}


def emit_film_completed(result: Any, slug_: str) -> None:
    _emit(FILM_COMPLETED, film_resource(slug_, result.title),
          {"film_id": result.film_id, "title": result.title, "mode": result.mode,
           "task_ids": [c.task_id for c in result.clips], "clips": len(result.clips),
           "duration": round(result.duration, 3), "cost_usd": result.total_cost_usd,
           "uri": result.s3_uri or str(Path(result.video_path).resolve()),
           "s3_uri": result.s3_uri, "local_path": str(Path(result.video_path).resolve()),
           "host": hostname(), "manifest_uri": result.manifest_uri or str(
               Path(result.manifest_path).resolve()),
           "sha256": result.sha256, "simulated": result.simulated})


def emit_film_failed(slug_: str, title: str, error: BaseException) -> None:
    failures = getattr(error, "failures", None) or []
    _emit(FILM_FAILED, film_resource(slug_, title),
          {"title": title, "error_type": type(error).__name__,
           "error": " ".join(str(error).split())[:500],
           "failed_task_ids": [f.task_id for f in failures if getattr(f, "task_id", None)],
           "host": hostname()})


def quietly(report: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """Run a notification; a failure is logged, never raised: a lost event must not lose
    a finished (paid) clip or film, nor hide the error a failed one ended with."""
    try:
        report(*args, **kwargs)
    except Exception:  # noqa: BLE001 - see above
        from prefect import get_run_logger

        with contextlib.suppress(Exception):
            get_run_logger().warning("could not report %s", getattr(report, "__name__",
                                                                    report), exc_info=True)


def reported(on_done: Callable[..., None], on_error: Callable[..., None]
             ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a function so ``on_done(result, *args, **kwargs)`` runs after it returns
    and ``on_error(exc, *args, **kwargs)`` before its exception propagates (both through
    ``quietly``)."""
    import functools

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                quietly(on_error, exc, *args, **kwargs)
                raise
            quietly(on_done, result, *args, **kwargs)
            return result
        return wrapper
    return decorate

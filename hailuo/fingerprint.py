"""A stable identity for a request: the basis of cache keys and idempotency keys.

Why not hash the request as given: a local path and the same bytes as a data URL are the
same paid request, and two paths to different bytes are not. Images are therefore
identified by content hash (URLs by the URL itself). Secrets never enter: the request
model holds no key.
"""

from __future__ import annotations

import hashlib
import json

from hailuo.capabilities import Provider, is_h3
from hailuo.h3media import media_fingerprint
from hailuo.images import image_fingerprint
from hailuo.models import H3_ONLY_FIELDS, H3_REFERENCE_FIELDS, VideoRequest

IMAGE_FIELDS = ("first_frame_image", "last_frame_image", "subject_reference")


def canonical_request(request: VideoRequest) -> dict[str, object]:
    """The request as plain data with images replaced by their fingerprints.

    ``callback_url`` is left out: where status news is sent does not change what is
    generated, and a receiver on a fresh port must not turn a resumed run into a new,
    paid request.
    """
    data = request.model_dump(mode="json", exclude={"callback_url"})
    for name in H3_ONLY_FIELDS:  # unset H3 fields leave older requests' identity unchanged
        if not data.get(name):
            data.pop(name, None)
    if is_h3(request.model):  # H3 media: up to 30-50 MB, videos and audios too
        for name in ("first_frame_image", "last_frame_image"):
            if data.get(name):
                data[name] = media_fingerprint(data[name], field=name)
        for name in H3_REFERENCE_FIELDS:
            if data.get(name):
                data[name] = [media_fingerprint(v, field=name) for v in data[name]]
        return data
    for name in IMAGE_FIELDS:
        if data.get(name):
            data[name] = image_fingerprint(data[name], field=name)
    return data


def request_fingerprint(request: VideoRequest, provider: Provider | str, take: int = 1) -> str:
    """sha256 over (canonical request, provider, model, take). Same inputs, same value."""
    payload = {
        "request": canonical_request(request),
        "provider": str(Provider(provider)),
        "model": request.model,
        "take": take,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()

"""``citywatch dashboards push --url --token``: upload the built boards to a Grafana server with
grafana-client, through Grafana's HTTP API:

1. ``GET /api/folders/citywatch``; on 404 ``POST /api/folders`` ``{"uid": "citywatch", "title": ...}``;
2. for each board ``POST /api/dashboards/db`` ``{"dashboard": {..., "id": null}, "folderUid":
   "citywatch", "overwrite": true, "message": ...}`` (the uid identifies it: a second push
   replaces the first, nothing is duplicated).

Any refusal stops the push with :class:`PushError`, one line naming what Grafana refused and
its answer.
"""

from __future__ import annotations

from pathlib import Path

from dashboards.common import FOLDER_UID
from dashboards.provisioning import FOLDER, load_built


class PushError(RuntimeError):
    pass


def _client(url: str, token: str, timeout: float):
    try:
        from grafana_client import GrafanaApi
    except ImportError:
        from dashboards import INSTALL_HINT

        raise PushError(f"grafana-client is not installed: {INSTALL_HINT}") from None
    return GrafanaApi.from_url(url, credential=token or None, timeout=timeout)


def _call(what: str, url: str, fn, *args):
    import requests
    from grafana_client.client import GrafanaException

    try:
        return fn(*args)
    except GrafanaException as e:
        raise PushError(f"Grafana at {url} refused {what} ({e.status_code}): {_oneline(e.message)}") from None
    except requests.RequestException as e:
        raise PushError(f"cannot reach Grafana at {url} ({type(e).__name__}): {_oneline(str(e))}") from None


def _oneline(text: str) -> str:
    return " ".join(str(text).split())[:300]


def push(out: Path | str, url: str, token: str, *, lang: str = "zh", timeout: float = 10.0) -> list[str]:
    """Upload every board of a build in ``out``; returns the uids pushed."""
    docs = load_built(out)
    api = _client(url, token, timeout)
    from grafana_client.client import GrafanaClientError

    try:
        api.folder.get_folder(FOLDER_UID)
    except GrafanaClientError as e:
        if e.status_code != 404:
            raise PushError(f"Grafana at {url} refused GET /api/folders/{FOLDER_UID} ({e.status_code}): "
                            f"{_oneline(e.message)}") from None
        _call(f"creating the folder {FOLDER_UID!r}", url, api.folder.create_folder, FOLDER(lang), FOLDER_UID)
    except Exception:
        _call(f"reading the folder {FOLDER_UID!r}", url, api.folder.get_folder, FOLDER_UID)
    pushed = []
    for doc in docs:
        payload = {"dashboard": {**doc, "id": None}, "folderUid": FOLDER_UID, "overwrite": True,
                   "message": "citywatch dashboards push"}
        _call(f"dashboard {doc.get('uid')!r}", url, api.dashboard.update_dashboard, payload)
        pushed.append(doc["uid"])
    return pushed

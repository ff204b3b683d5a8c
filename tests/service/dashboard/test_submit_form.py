"""The jobs page's submit form, over HTTP: a job with photos queued, refusals shown, cross-site refused."""

from __future__ import annotations

import re

import pytest
import yaml
from service_fixtures import Service, ServiceFactory, spec

from imagefunnel.market.images import AssetLibrary
from imagefunnel.service.dashboard.routes import CSP


def _error_shown(html: str) -> str:
    found = re.search(r'<p id="submit-error"[^>]*>(.*?)</p>', html, re.S)
    assert found is not None, "no error shown"
    return found.group(1)


pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@pytest.fixture
def signed_in(make_service: ServiceFactory) -> Service:
    service = make_service()
    key = service.a["Authorization"].removeprefix("Bearer ")
    assert service.client.post("/login", data={"key": key}, follow_redirects=False).status_code == 303
    return service


def test_a_spec_and_a_photo_submitted_through_the_form_queue_a_job_naming_the_upload(
    signed_in: Service,
) -> None:
    client = signed_in.client
    page = client.get("/")
    assert (
        'action="/jobs/new"' in page.text
        and 'id="submit-error"' not in page.text
        and page.headers["content-security-policy"] == CSP
    )
    photo = AssetLibrary().file("obama_3.jpg")
    text = yaml.safe_dump(spec(deliver=1, max_candidates=4, use_case="headshot", name="from the form"))
    response = client.post(
        "/jobs/new",
        data={"spec": text},
        files={
            "references": ("me.jpg", photo, "image/jpeg"),
            "source": ("", b"", "application/octet-stream"),
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    job_id = response.headers["location"].removeprefix("/jobs/")
    job = client.get(f"/v1/jobs/{job_id}").json()  # the cookie signs the API in too
    uploads = client.get("/v1/uploads").json()
    assert [u["filename"] for u in uploads] == ["me.jpg"]
    assert job["name"] == "from the form" and job["spec"]["references"] == [uploads[0]["ref"]]
    assert client.get(response.headers["location"]).status_code == 200


def test_a_refused_spec_is_shown_as_the_apis_one_line_message_escaped_with_the_text_kept(
    signed_in: Service,
) -> None:
    client = signed_in.client
    text = "name: <script>alert(1)</script>\nprompts: [p]\ndeliver: 0\nbudget_usd: 1\n"
    response = client.post("/jobs/new", data={"spec": text})
    assert response.status_code == 422
    assert response.headers["content-security-policy"] == CSP
    assert "<script>alert(1)</script>" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text  # the spec, kept in the textarea
    api = client.post("/v1/jobs", content=text, headers={"content-type": "application/yaml"}).json()
    assert _error_shown(response.text) == api["error"]["message"] == "spec:3:1: deliver: must be ≥ 1"
    # A host path is refused as over the API, and a photo that is not an image names itself.
    host = client.post("/jobs/new", data={"spec": yaml.safe_dump(spec(references=["/etc/passwd"]))})
    assert host.status_code == 422 and "references[0]: paths on the server" in _error_shown(host.text)
    fake = client.post(
        "/jobs/new", data={"spec": yaml.safe_dump(spec())}, files={"references": ("x.jpg", b"not an image")}
    )
    assert fake.status_code == 422 and _error_shown(fake.text).startswith("x.jpg: ")
    empty = client.post("/jobs/new", data={"spec": "  "})
    assert empty.status_code == 422 and "paste a spec" in _error_shown(empty.text)
    assert client.get("/v1/jobs").json()["total"] == 0


def test_a_spec_file_and_an_input_photo_fill_the_spec(signed_in: Service) -> None:
    client = signed_in.client
    text = yaml.safe_dump(spec(deliver=1, max_candidates=2, use_case="background_removal", prompts=[]))
    photo = AssetLibrary().file("obama_3.jpg")
    response = client.post(
        "/jobs/new",
        files={"spec_file": ("job.yaml", text.encode()), "source": ("in.jpg", photo, "image/jpeg")},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    job = client.get(f"/v1/jobs/{response.headers['location'].removeprefix('/jobs/')}").json()
    assert job["spec"]["source"].startswith("upload:") and job["spec"]["use_case"] == "background_removal"


def test_another_site_cannot_submit_and_a_stranger_is_sent_to_sign_in(
    signed_in: Service, make_service: ServiceFactory
) -> None:
    client = signed_in.client
    body = {"spec": yaml.safe_dump(spec())}
    for headers in ({"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}):
        refused = client.post("/jobs/new", data=body, headers=headers)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "cross_site"
    assert client.get("/v1/jobs").json()["total"] == 0
    same = client.post(
        "/jobs/new", data=body, headers={"origin": "http://testserver"}, follow_redirects=False
    )
    assert same.status_code == 303
    client.cookies.clear()
    stranger = client.post("/jobs/new", data=body, follow_redirects=False)
    assert stranger.status_code == 303 and stranger.headers["location"] == "/login"

"""A scripted runner, written from PROTOCOL.md, that fakehub's own tests drive through the classic
flow of §10.1: register (§2.4, §2.6), OAuth (§3), session (§4.1), long-poll and decrypt (§4.2, §4.3),
lock renewal (§7.2), timeline, feed, logs, step summary, actions and job completion (§7, §8).

It does what the official runner does on the wire, including the unauthenticated first request
answered by a Bearer challenge, and lets a test break any single rule."""
import base64
import re
import http.client
import json
import time
import urllib.parse
import uuid

from cryptography.hazmat.primitives import hashes, padding as sympadding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

LOC = {
    "pools": "a8c47e17-4d56-4a56-92bb-de7ea7dc65be",
    "agents": "e298ef32-5878-4cab-993c-043836571f42",
    "sessions": "134e239e-2df3-4794-a6f6-24f1f19ec8dc",
    "messages": "c3a054f6-7a8a-49c0-944e-3a8e5d7adfd7",
    "jobrequests": "fc825784-c92a-4299-9221-998a02d1b54f",
    "packages": "8ffcd551-079c-493a-9c02-54346299d144",
    "timelines": "83597576-cc2c-453c-bea6-2882ae6a1653",
    "records": "8893bc5b-35b2-4be7-83cb-99e683551db4",
    "feed": "858983e4-19bd-4c5e-864c-507b59b58b12",
    "logs": "46f5667d-263a-4684-91b1-dff7fdcf64e2",
    "attachments": "7898f959-9cdf-4096-b29e-7f293031629e",
    "events": "557624af-b29e-4c20-8ab0-0399d2204f3f",
    "actiondownloadinfo": "27d7f831-88c1-4719-8ca1-6a061dad90eb",
}
JSON = "application/json; charset=utf-8"


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body) if self.body else None

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return f"<Reply {self.status} {self.body[:300]!r}>"


def request(method, url, body=None, headers=None, timeout=90):
    """One HTTP exchange on a fresh connection. body: bytes, str, or JSON-able."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    headers = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        headers.setdefault("Content-Type", JSON)
    if isinstance(body, str):
        body = body.encode()
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return Reply(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64(data):
    return base64.b64encode(data).decode()


def unsigned(n):
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


class Locations:
    """Route templates discovered through connectionData (§1.3)."""

    def __init__(self, base, reply):
        self.base = base
        self.templates = {}
        for d in reply["locationServiceData"]["serviceDefinitions"]:
            if d.get("resourceVersion", 0) > 0:
                self.templates[d["identifier"].lower()] = d["relativePath"]

    def url(self, guid, values=None, query=None):
        """Expands a template: {name} by its value (names case-insensitive); a segment whose
        parameters are all missing is dropped; relative to the base path (§1.3)."""
        values = {k.lower(): str(v) for k, v in (values or {}).items() if v is not None}
        segs = []
        for seg in self.templates[guid].strip("/").split("/"):
            names = [n.lower() for n in re.findall(r"\{\*?(\w+)\}", seg)]
            if names and all(n not in values for n in names):
                continue
            segs.append(re.sub(r"\{\*?(\w+)\}",
                               lambda m: urllib.parse.quote(values.get(m.group(1).lower(), ""), safe=""), seg))
        url = self.base.rstrip("/") + "/" + "/".join(segs)
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return url


def discover(base, token=None):
    r = request("GET", base.rstrip("/") + "/_apis/connectionData?connectOptions=1&lastChangeId=-1&lastChangeId64=-1")
    assert r.status == 200, r
    return Locations(base, r.json())


_KEYS = []
_KEY_TURN = [0]


def next_key():
    """A 2048-bit RSA key from a small rotating pool (generating one takes ~0.5 s): consecutive
    runners always get different keys."""
    i = _KEY_TURN[0] % 6
    _KEY_TURN[0] += 1
    if i == len(_KEYS):
        _KEYS.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return _KEYS[i]


class Runner:
    """The listener side: registration, OAuth, session, polls, job requests."""

    def __init__(self, github_url, name="runner-1", labels=("self-hosted", "Linux", "X64"), user_labels=(),
                 version="2.336.0"):
        self.github_url = github_url
        parts = urllib.parse.urlsplit(github_url)
        self.api = f"{parts.scheme}://{parts.netloc}/api/v3"     # GHES form; port kept (§2.2)
        self.name = name
        self.labels = list(labels)
        self.user_labels = list(user_labels)
        self.version = version
        self.key = next_key()
        self.token = None
        self.session = None
        self.session_key = None
        self.last_message_id = None
        self.jti_log = []

    # --- registration (§2.4, §2.6) ---

    def exchange(self, reg_token, event="register"):
        r = request("POST", self.api + "/actions/runner-registration",
                    {"url": self.github_url, "runner_event": event},
                    {"Authorization": f"RemoteAuth {reg_token}"})
        return r

    def agent_body(self, ephemeral=False, disable_update=False):
        pub = self.key.public_key().public_numbers()
        return {"labels": [{"id": 0, "name": l, "type": "system"} for l in self.labels] +
                          [{"id": 0, "name": l, "type": "user"} for l in self.user_labels],
                "maxParallelism": 1, "createdOn": "0001-01-01T00:00:00",
                "authorization": {"publicKey": {"exponent": b64(unsigned(pub.e)), "modulus": b64(unsigned(pub.n))}},
                "id": 0, "name": self.name, "version": self.version, "osDescription": "Debian GNU/Linux 12",
                "ephemeral": ephemeral, "disableUpdate": disable_update, "status": 0,
                "provisioningState": "Provisioned"}

    def register(self, reg_token, group="Default", ephemeral=False, disable_update=False, replace=False):
        r = self.exchange(reg_token)
        assert r.status == 200, r
        reg = r.json()
        assert reg["token_schema"] == "OAuthAccessToken"
        self.tenant = reg["url"]
        self.admin_token = reg["token"]
        self.loc = discover(self.tenant)
        auth = {"Authorization": f"Bearer {self.admin_token}"}
        pools = request("GET", self.loc.url(LOC["pools"], query={"poolType": "Automation"}), headers=auth).json()
        default = next(p for p in pools["value"] if p["isInternal"])
        if any(not p["isHosted"] for p in pools["value"]):
            pool = next(p for p in pools["value"] if not p["isHosted"] and p["name"].lower() == group.lower())
        else:
            pool = default
        self.pool_id = pool["id"]
        found = request("GET", self.loc.url(LOC["agents"], {"poolId": 0},
                                            {"agentName": self.name, "includeCapabilities": "False"}),
                        headers=auth).json()
        body = self.agent_body(ephemeral, disable_update)
        if found["count"] and replace:
            body["id"] = found["value"][0]["id"]
            r = request("PUT", self.loc.url(LOC["agents"], {"poolId": self.pool_id, "agentId": body["id"]}),
                        body, auth)
        else:
            r = request("POST", self.loc.url(LOC["agents"], {"poolId": self.pool_id}), body, auth)
        assert r.status == 200, r
        agent = r.json()
        self.agent = agent
        self.agent_id = agent["id"]
        self.client_id = agent["authorization"]["clientId"]
        self.authorization_url = agent["authorization"]["authorizationUrl"]
        fips = (agent.get("properties") or {}).get("RequireFipsCryptography")
        self.fips = True if fips is None else bool(fips["$value"] if isinstance(fips, dict) else fips)
        return agent

    # --- OAuth (§3) ---

    def assertion(self, alg=None, aud=None, now=None, lifetime=300, jti=None, key=None, sub=None, extra=None):
        alg = alg or ("PS256" if self.fips else "RS256")
        now = int(time.time()) if now is None else int(now)
        claims = {"sub": sub or self.client_id, "iss": sub or self.client_id,
                  "aud": aud or self.authorization_url, "jti": jti or str(uuid.uuid4()),
                  "nbf": now, "exp": now + lifetime}
        claims.update(extra or {})
        self.jti_log.append(claims["jti"])
        head = b64url(json.dumps({"typ": "JWT", "alg": alg}).encode())
        payload = b64url(json.dumps(claims).encode())
        signed = f"{head}.{payload}".encode()
        key = key or self.key
        if alg == "RS256":
            sig = key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "PS256":
            sig = key.sign(signed, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
        else:
            sig = b""
        return f"{head}.{payload}.{b64url(sig)}"

    def token_request(self, assertion=None, content_type="application/x-www-form-urlencoded", form=None):
        form = form if form is not None else {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion or self.assertion()}
        return request("POST", self.authorization_url, urllib.parse.urlencode(form),
                       {"Content-Type": content_type, "Accept": "application/json"})

    def oauth(self, **kw):
        r = self.token_request(self.assertion(**kw))
        assert r.status == 200, r
        self.token = r.json()["access_token"]
        return self.token

    def vss(self, method, loc, values=None, query=None, body=None, headers=None):
        """A runner-credential call as the official runner makes it: no token until a Bearer
        challenge (§3.4), then a token, then the same request again."""
        url = self.loc.url(LOC[loc], values, query)
        hdr = dict(headers or {})
        for _ in range(3):
            if self.token:
                hdr["Authorization"] = f"Bearer {self.token}"
            r = request(method, url, body, hdr)
            if r.status == 401 and "bearer" in (r.header("WWW-Authenticate") or "").lower():
                self.oauth()
                continue
            return r
        return r

    # --- session and messages (§4) ---

    def connect(self):
        self.loc = discover(self.tenant)

    def create_session(self, owner="test-host (PID: 1)"):
        body = {"sessionId": "00000000-0000-0000-0000-000000000000", "ownerName": owner,
                "agent": {"id": self.agent_id, "name": self.name, "version": self.version,
                          "osDescription": "Debian GNU/Linux 12", "ephemeral": None, "status": 0,
                          "provisioningState": None},
                "useFipsEncryption": False}
        r = self.vss("POST", "sessions", {"poolId": self.pool_id}, body=body)
        if r.status != 200:
            return r
        s = r.json()
        self.session = s
        ek = s["encryptionKey"]
        h = hashes.SHA256() if s["useFipsEncryption"] else hashes.SHA1()
        if ek["encrypted"]:
            self.session_key = self.key.decrypt(base64.b64decode(ek["value"]),
                                                padding.OAEP(mgf=padding.MGF1(algorithm=h), algorithm=h, label=None))
        else:
            self.session_key = base64.b64decode(ek["value"])
        return r

    def poll(self, status="Online", timeout=90):
        query = {"sessionId": self.session["sessionId"]}
        if self.last_message_id is not None:
            query["lastMessageId"] = self.last_message_id
        query.update({"status": status, "runnerVersion": self.version, "os": "Linux", "architecture": "X64",
                      "disableUpdate": "false"})
        r = self.vss("GET", "messages", {"poolId": self.pool_id}, query)
        if r.status == 204 or (r.status == 200 and not r.body):
            return None, r
        if r.status != 200:
            return None, r
        m = r.json()
        self.last_message_id = m["messageId"]
        return self.decrypt(m), r

    def decrypt(self, m):
        if m.get("iv"):
            iv = base64.b64decode(m["iv"])
            dec = Cipher(algorithms.AES(self.session_key), modes.CBC(iv)).decryptor()
            padded = dec.update(base64.b64decode(m["body"])) + dec.finalize()
            unpad = sympadding.PKCS7(128).unpadder()
            pt = unpad.update(padded) + unpad.finalize()
        else:
            pt = m["body"].encode()
        if pt.startswith(b"\xef\xbb\xbf"):
            pt = pt[3:]
        m = dict(m, plaintext=pt)
        m["json"] = json.loads(pt.decode("utf-8"))
        return m

    def delete_message(self, message_id):
        return self.vss("DELETE", "messages", {"poolId": self.pool_id, "messageId": message_id},
                        {"sessionId": self.session["sessionId"]})

    def delete_session(self):
        return self.vss("DELETE", "sessions", {"poolId": self.pool_id, "sessionId": self.session["sessionId"]})

    def renew(self, request_id):
        return self.vss("PATCH", "jobrequests", {"poolId": self.pool_id, "requestId": request_id},
                        {"lockToken": "00000000-0000-0000-0000-000000000000"}, {"requestId": request_id})

    def finish(self, request_id, result):
        return self.vss("PATCH", "jobrequests", {"poolId": self.pool_id, "requestId": request_id},
                        {"lockToken": "00000000-0000-0000-0000-000000000000"},
                        {"requestId": request_id, "finishTime": "2026-05-01T12:05:00.0000000Z", "result": result})


class Worker:
    """The job side: everything is done with the job token against SystemVssConnection.url."""

    def __init__(self, message):
        self.msg = message
        ep = next(e for e in message["resources"]["endpoints"] if e["name"].lower() == "systemvssconnection")
        assert ep["authorization"]["scheme"] == "OAuth"
        self.url = ep["url"]
        self.token = ep["authorization"]["parameters"]["AccessToken"]
        self.plan = message["plan"]
        self.job_id = message["jobId"]
        self.timeline_id = message["timeline"]["id"]
        self.loc = discover(self.url)

    def values(self, **more):
        v = {"scopeIdentifier": self.plan["scopeIdentifier"], "hubName": self.plan["planType"],
             "planId": self.plan["planId"]}
        v.update(more)
        return v

    def call(self, method, loc, values, body=None, query=None, content_type=None, token=None):
        headers = {"Authorization": f"Bearer {token or self.token}"}
        if content_type:
            headers["Content-Type"] = content_type
        return request(method, self.loc.url(LOC[loc], values, query), body, headers)

    def records(self, records, **kw):
        return self.call("PATCH", "records", self.values(timelineId=self.timeline_id),
                         {"count": len(records), "value": records}, **kw)

    def feed(self, step_id, lines, start_line=1, route_record=None, **kw):
        return self.call("POST", "feed", self.values(timelineId=self.timeline_id, recordId=route_record or self.job_id),
                         {"count": len(lines), "value": lines, "stepId": step_id, "startLine": start_line}, **kw)

    def create_log(self, record_id, **kw):
        return self.call("POST", "logs", self.values(),
                         {"path": f"logs\\{record_id}", "createdOn": "0001-01-01T00:00:00",
                          "lastChangedOn": "0001-01-01T00:00:00", "id": 0, "location": None}, **kw)

    def append_log(self, log_id, data, content_type="application/octet-stream", **kw):
        return self.call("POST", "logs", self.values(logId=log_id), data, content_type=content_type, **kw)

    def summary(self, step_id, text, content_type="application/octet-stream", **kw):
        return self.call("PUT", "attachments",
                         self.values(timelineId=self.timeline_id, recordId=self.job_id, type="Checks.Step.Summary",
                                     name=step_id), text.encode(), content_type=content_type, **kw)

    def download_info(self, actions, **kw):
        return self.call("POST", "actiondownloadinfo", self.values(), {"actions": actions},
                         query={"jobId": self.job_id}, **kw)

    def completed(self, result, outputs=None, name="JobCompleted", **kw):
        body = {"name": name, "jobId": self.job_id, "requestId": self.msg["requestId"], "result": result,
                "outputs": {k: {"value": v} for k, v in (outputs or {}).items()}}
        return self.call("POST", "events", self.values(), body, **kw)


def now_iso():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e7):07d}Z"

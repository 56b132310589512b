#!/usr/bin/python3
"""fakehub: a fake GitHub Actions service (classic pipelines flow) for harrier's tests.

Written from ../shared/protocol/PROTOCOL.md (sections 1-4, 6-8 and the fake-service profile of
section 11), not from harrier's code, so that a misunderstanding shared with the runner cannot
pass. One loopback port serves the GitHub API (/api/v3), one tenant (/t/<tenant>/: location
discovery, OAuth token endpoint, pools, agents, sessions, messages, job requests, and the
job-scoped timelines, logs, feed, attachments, events and action download info), action
tarballs (/_actions/tarball/...) and an admin API for tests (/_admin/...).

    python3 tests/fakehub/fakehub.py --port 0 --state-dir DIR      prints its URL, then serves

Import it from a test: FakeHub(...).start() runs it in a thread; FakeHubClient(url) drives the
admin API over HTTP (also for a fakehub started as a subprocess). See README.md beside this file.
"""
import argparse
import base64
import datetime
import gzip
import hashlib
import hmac
import http.server
import io
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, padding as sympadding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
BOM = b"\xef\xbb\xbf"
TASK_RESULTS = ["succeeded", "succeededWithIssues", "failed", "canceled", "skipped", "abandoned"]
RECORD_STATES = ["pending", "inProgress", "completed"]
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

# ---------------------------------------------------------------------------------------------
# JSON as the VSS services read it: member names case-insensitive (PROTOCOL.md §1.1.2).


class CIDict(dict):
    """A dict whose lookups ignore case; keys keep the casing they were first written with."""

    def __init__(self, pairs=()):
        super().__init__()
        self._lower = {}
        for k, v in (pairs.items() if isinstance(pairs, dict) else pairs):
            self[k] = v

    def _key(self, key):
        if isinstance(key, str):
            return self._lower.get(key.lower(), key)
        return key

    def __getitem__(self, key):
        return super().__getitem__(self._key(key))

    def __setitem__(self, key, value):
        if isinstance(key, str):
            key = self._lower.setdefault(key.lower(), key)
        super().__setitem__(key, value)

    def __delitem__(self, key):
        real = self._key(key)
        super().__delitem__(real)
        if isinstance(real, str):
            self._lower.pop(real.lower(), None)

    def __contains__(self, key):
        return super().__contains__(self._key(key))

    def get(self, key, default=None):
        return super().get(self._key(key), default)

    def pop(self, key, *default):
        real = self._key(key)
        if isinstance(real, str) and super().__contains__(real):
            self._lower.pop(real.lower(), None)
        return super().pop(real, *default)

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]


def loads_ci(data):
    if isinstance(data, bytes):
        if data.startswith(BOM):
            data = data[3:]
        data = data.decode("utf-8")
    return json.loads(data, object_pairs_hook=CIDict)


def as_ci(obj):
    """A deep copy of plain JSON data with case-insensitive objects."""
    return loads_ci(json.dumps(obj))


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def iso(t=None):
    """UTC, 7 fractional digits, Z: the official runner's DateTime format (§1.1.6)."""
    d = datetime.datetime.fromtimestamp(time.time() if t is None else t, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond:06d}0Z"


def parse_iso(text):
    """Reads 0-7 fractional digits, Z, an offset or no zone (§1.1.6); returns Unix seconds."""
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,7}))?(Z|[+-]\d\d:\d\d)?", text or "")
    if not m:
        raise ValueError(f"not an ISO-8601 date-time: {text!r}")
    y, mo, d, h, mi, s, frac, zone = m.groups()
    tz = datetime.timezone.utc
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        tz = datetime.timezone(sign * datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    dt = datetime.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=tz)
    return dt.timestamp() + (int(frac) / 10 ** len(frac) if frac else 0)


def is_guid(text):
    return isinstance(text, str) and re.fullmatch(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", text) is not None


def new_guid():
    return str(uuid.uuid4())


def camel(name):
    return name[:1].lower() + name[1:]


def version_tuple(text):
    try:
        return tuple(int(x) for x in str(text).split(".")[:3])
    except ValueError:
        return (0,)


# ---------------------------------------------------------------------------------------------
# Errors: every refusal is an HttpError; the handler records its reason.


class HttpError(Exception):
    def __init__(self, status, reason, body=None, headers=None, content_type="application/json"):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.body = body if body is not None else {"message": reason}
        self.headers = headers or {}
        self.content_type = content_type


def vss_error(status, type_key, message, error_code=0):
    """A wrapped VSS exception (§1.5.1): behaviour is keyed on typeKey."""
    body = {"$id": "1", "innerException": None, "message": message,
            "typeName": f"GitHub.DistributedTask.WebApi.{type_key}, GitHub.DistributedTask.WebApi",
            "typeKey": type_key, "errorCode": error_code, "eventId": 3000}
    return HttpError(status, f"{type_key}: {message}", body)


def bad_request(message):
    return vss_error(400, "ArgumentException", message)


def oauth_error(error, description):
    return HttpError(400, f"oauth {error}: {description}", {"error": error, "error_description": description})


def member(obj, name, kind=None, required=True, where="body"):
    """obj[name] read case-insensitively; refuses a missing (or null) required member."""
    if not isinstance(obj, dict):
        raise bad_request(f"{where} must be a JSON object")
    value = obj.get(name)
    if value is None:
        if required:
            raise bad_request(f"{where}: required member '{name}' is missing")
        return None
    if kind is not None and not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise bad_request(f"{where}: member '{name}' has the wrong type ({type(value).__name__})")
    return value


def enum_in(value, names, what):
    """An enum read as GitHub reads it: a name in any case, or its integer value (§1.1.4)."""
    if isinstance(value, bool):
        raise bad_request(f"{what}: {value!r} is not a valid value")
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        value = int(value)
    if isinstance(value, int):
        if 0 <= value < len(names):
            return names[value]
        raise bad_request(f"{what}: {value} is not a valid value")
    if isinstance(value, str):
        for n in names:
            if n.lower() == value.lower():
                return n
    raise bad_request(f"{what}: {value!r} is not a valid value")


def as_bool(value, what):
    """A boolean as Newtonsoft reads one: JSON true/false, or "True"/"false" (null: false)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad_request(f"{what}: {value!r} is not a boolean")


def int_member(obj, name, where="body", required=True):
    value = member(obj, name, required=required, where=where)
    if value is None:
        return None
    if isinstance(value, bool):
        raise bad_request(f"{where}: member '{name}' is not a number")
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    if isinstance(value, (int, float)) and int(value) == value:
        return int(value)
    raise bad_request(f"{where}: member '{name}' is not a number")


# ---------------------------------------------------------------------------------------------
# Locations (§1.3, §1.4): the route templates fakehub advertises and routes by.

LOCATIONS = [
    # name, GUID, area, resource, methods, real template, [RS] template
    ("pools", "a8c47e17-4d56-4a56-92bb-de7ea7dc65be", "distributedtask", "pools", ("GET",),
     "_apis/distributedtask/pools/{poolId}", "_apis/v1/AgentPools"),
    ("agents", "e298ef32-5878-4cab-993c-043836571f42", "distributedtask", "agents",
     ("GET", "POST", "PUT", "PATCH", "DELETE"),
     "_apis/distributedtask/pools/{poolId}/agents/{agentId}", "_apis/v1/Agent/{poolId}/{agentId}"),
    ("sessions", "134e239e-2df3-4794-a6f6-24f1f19ec8dc", "distributedtask", "sessions", ("POST", "DELETE"),
     "_apis/distributedtask/pools/{poolId}/sessions/{sessionId}", "_apis/v1/AgentSession/{poolId}/{sessionId}"),
    ("messages", "c3a054f6-7a8a-49c0-944e-3a8e5d7adfd7", "distributedtask", "messages", ("GET", "DELETE"),
     "_apis/distributedtask/pools/{poolId}/messages/{messageId}", "_apis/v1/Message/{poolId}/{messageId}"),
    ("jobrequests", "fc825784-c92a-4299-9221-998a02d1b54f", "distributedtask", "jobrequests",
     ("GET", "PATCH", "DELETE"),
     "_apis/distributedtask/pools/{poolId}/jobrequests/{requestId}", "_apis/v1/AgentRequest/{poolId}/{requestId}"),
    ("packages", "8ffcd551-079c-493a-9c02-54346299d144", "distributedtask", "packages", ("GET",),
     "_apis/distributedtask/packages/{packageType}/{platform}/{version}",
     "_apis/v1/Package/{packageType}/{platform}/{version}"),
    ("timelines", "83597576-cc2c-453c-bea6-2882ae6a1653", "distributedtask", "timelines", ("GET", "POST"),
     "{scopeIdentifier}/_apis/distributedtask/hubs/{hubName}/plans/{planId}/timelines/{timelineId}",
     "_apis/v1/Timeline/{scopeIdentifier}/{hubName}/{planId}/timeline/{timelineId}"),
    ("records", "8893bc5b-35b2-4be7-83cb-99e683551db4", "distributedtask", "records", ("PATCH",),
     "{scopeIdentifier}/_apis/distributedtask/hubs/{hubName}/plans/{planId}/timelines/{timelineId}/records",
     "_apis/v1/Timeline/{scopeIdentifier}/{hubName}/{planId}/{timelineId}"),
    ("feed", "858983e4-19bd-4c5e-864c-507b59b58b12", "distributedtask", "feed", ("POST",),
     "{scopeIdentifier}/_apis/distributedtask/hubs/{hubName}/plans/{planId}/timelines/{timelineId}"
     "/records/{recordId}/feed",
     "_apis/v1/TimeLineWebConsoleLog/{scopeIdentifier}/{hubName}/{planId}/{timelineId}/{recordId}"),
    ("logs", "46f5667d-263a-4684-91b1-dff7fdcf64e2", "distributedtask", "logs", ("POST",),
     "{scopeIdentifier}/_apis/distributedtask/hubs/{hubName}/plans/{planId}/logs/{logId}",
     "_apis/v1/Logfiles/{scopeIdentifier}/{hubName}/{planId}/{logId}"),
    ("attachments", "7898f959-9cdf-4096-b29e-7f293031629e", "distributedtask", "attachments", ("PUT",),
     "{scopeIdentifier}/_apis/distributedtask/hubs/{hubName}/plans/{planId}/timelines/{timelineId}"
     "/records/{recordId}/attachments/{type}/{name}",
     "_apis/v1/Timeline/{scopeIdentifier}/{hubName}/{planId}/{timelineId}/attachments/{recordId}/{type}/{name}"),
    ("events", "557624af-b29e-4c20-8ab0-0399d2204f3f", "distributedtask", "events", ("POST",),
     "{scopeIdentifier}/_apis/distributedtask/hubs/{hubName}/plans/{planId}/events",
     "_apis/v1/FinishJob/{scopeIdentifier}/{hubName}/{planId}"),
    ("actiondownloadinfo", "27d7f831-88c1-4719-8ca1-6a061dad90eb", "distributedtask", "actiondownloadinfo",
     ("POST",),
     "{scopeIdentifier}/_apis/distributedtask/hubs/{hubName}/plans/{planId}/actiondownloadinfo",
     "_apis/v1/ActionDownloadInfo/{scopeIdentifier}/{hubName}/{planId}"),
]
LOCATION_IDS = {name: guid for name, guid, *_ in LOCATIONS}


def template_regex(template):
    """A route template as a regex: a segment made only of parameters may be absent (§1.3)."""
    out = ""
    for seg in template.strip("/").split("/"):
        params = re.findall(r"\{\*?(\w+)\}", seg)
        if params and re.fullmatch(r"(\{\*?\w+\})+", seg):
            out += "(?:/(?P<%s>[^/]+))?" % params[0]
        elif params:
            pieces = re.split(r"(\{\*?\w+\})", seg)
            out += "/" + "".join(f"(?P<{p[1:-1].lstrip('*')}>[^/]+)" if p.startswith("{") else re.escape(p)
                                 for p in pieces if p)
        else:
            out += "/" + re.escape(seg)
    return re.compile("^" + out + "/?$", re.I)


class Router:
    def __init__(self, layout):
        if layout not in ("real", "rs"):
            raise ValueError("routes must be 'real' or 'rs'")
        self.layout = layout
        self.routes = []
        for name, guid, area, resource, methods, real, rs in LOCATIONS:
            # runner.server writes its templates with a leading "/" (§1.3: still relative to the base)
            template = real if layout == "real" else "/" + rs
            self.routes.append((name, guid, area, resource, methods, template, template_regex(template)))

    def match(self, method, rel):
        """(name, route values) for a path relative to the tenant base, or None."""
        path_matched = None
        for name, _guid, _area, _res, methods, _tpl, rx in self.routes:
            m = rx.match(rel)
            if m:
                if method in methods:
                    return name, {k: urllib.parse.unquote(v) for k, v in m.groupdict().items() if v is not None}
                path_matched = name
        if path_matched:
            raise vss_error(405, "MethodNotAllowedException", f"{method} is not allowed on {path_matched}")
        return None

    def service_definitions(self):
        defs = []
        for name, guid, area, resource, _methods, template, _rx in self.routes:
            defs.append({"serviceType": area, "identifier": guid, "displayName": resource,
                         "relativeToSetting": "fullyQualified", "relativePath": template,
                         "resourceVersion": 3, "minVersion": "1.0", "maxVersion": "7.1",
                         "serviceOwner": EMPTY_GUID})
        return defs


# ---------------------------------------------------------------------------------------------
# Tokens: every token fakehub issues is JWT-shaped and carries its kind.


class Token:
    def __init__(self, value, kind, subject, expires):
        self.value = value
        self.kind = kind          # registration, remove, admin, runner, job, github, action
        self.subject = subject    # agent id (runner), request id (job), scope url (admin) ...
        self.expires = expires
        self.revoked = False

    def valid(self, now):
        return not self.revoked and now < self.expires


KIND_NAMES = {"registration": "registration token", "remove": "remove token",
              "admin": "registration-exchange token (runner-registration)", "runner": "runner OAuth token",
              "job": "job token", "github": "GITHUB_TOKEN", "action": "action download token"}


class Settings(dict):
    DEFAULTS = {
        "poll_hold": 50.0,            # long-poll hold, seconds (< 60, §4.2)
        "session_expiry": 90.0,       # a session with no poll for this long expires (§11.2.5)
        "session_expired_status": 404,
        "lock_seconds": 600.0,        # job lock granted by each renewal (§11.2.7)
        "fips_encryption": True,      # useFipsEncryption in the session (OAEP SHA-256 vs SHA-1)
        "require_fips_property": True,  # agent property RequireFipsCryptography (None: omitted)
        "message_bom": True,          # prefix encrypted plaintexts with a UTF-8 BOM, as .NET may
        "min_runner_version": None,   # refuse older runners on the message poll (errorCode 1)
        "cancel_delay": 2.0,          # JobCancellation no sooner than this after the job (§7.7)
        "plan_version": 12,
        "token_lifetime": 3600.0,
        "job_token_lifetime": 6 * 3600.0,
        "clock_skew": 300.0,          # JWT exp/nbf tolerance (§3.1: at least 5 minutes)
        "reaper_interval": 0.2,
    }

    def __init__(self, **kw):
        super().__init__(self.DEFAULTS)
        for k, v in kw.items():
            self.set(k, v)

    def set(self, key, value):
        if key not in self.DEFAULTS:
            raise KeyError(f"unknown setting {key!r}")
        self[key] = value


# ---------------------------------------------------------------------------------------------
# The state of the fake service. Every member is guarded by FakeHub.lock.


class Agent:
    def __init__(self, agent_id, pool_id, body, public_key, client_id, authorization_url):
        self.id = agent_id
        self.pool_id = pool_id
        self.client_id = client_id
        self.authorization_url = authorization_url
        self.created_on = iso()
        self.session = None
        self.job = None            # the Job this agent holds (assigned or running)
        self.deleted = False
        self.update(body, public_key)

    def update(self, body, public_key):
        """Reads a TaskAgent body (validated whole before anything changes)."""
        name = member(body, "name", str)
        version = member(body, "version", str)
        labels = []
        for i, label in enumerate(member(body, "labels", list)):
            lname = member(label, "name", str, where=f"labels[{i}]")
            ltype = enum_in(label.get("type") or "user", ["system", "user"], f"labels[{i}].type")
            labels.append({"id": 0, "name": lname, "type": ltype})
        self.name, self.version, self.labels = name, version, labels
        self.os_description = body.get("osDescription") or ""
        self.ephemeral = as_bool(body.get("ephemeral"), "ephemeral")
        self.disable_update = as_bool(body.get("disableUpdate"), "disableUpdate")
        self.max_parallelism = body.get("maxParallelism") or 1
        self.public_key = public_key
        pub = public_key.public_numbers()
        self.exponent = base64.b64encode(pub.e.to_bytes((pub.e.bit_length() + 7) // 8, "big")).decode()
        self.modulus = base64.b64encode(pub.n.to_bytes((pub.n.bit_length() + 7) // 8, "big")).decode()

    def to_json(self, settings, base):
        props = {}
        if settings["require_fips_property"] is not None:
            props["RequireFipsCryptography"] = {"$type": "System.Boolean", "$value": bool(settings["require_fips_property"])}
        status = "online" if self.session else "offline"
        return {"id": self.id, "name": self.name, "version": self.version, "osDescription": self.os_description,
                "enabled": True, "status": status, "provisioningState": "Provisioned",
                "ephemeral": self.ephemeral, "disableUpdate": self.disable_update,
                "maxParallelism": self.max_parallelism, "createdOn": self.created_on,
                "labels": self.labels, "accessPoint": None,
                "authorization": {"authorizationUrl": self.authorization_url, "clientId": self.client_id,
                                  "publicKey": {"exponent": self.exponent, "modulus": self.modulus}},
                "properties": props}


class Session:
    def __init__(self, agent, owner_name, fips):
        self.id = new_guid()
        self.agent = agent
        self.owner_name = owner_name
        self.key = os.urandom(32)
        self.fips = fips
        self.last_activity = time.time()
        self.polls = 0            # polls being held right now
        self.generation = 0       # bumped by each poll; a newer poll supersedes an older one
        self.status = "Online"
        self.unacked = []         # delivered, not yet deleted: re-delivered on the next poll
        self.outbox = []          # messages waiting for a poll
        self.dead = None          # why the session ended


class Message:
    def __init__(self, message_type, body, job=None, not_before=0.0):
        self.id = None
        self.type = message_type
        self.body = body          # JSON text
        self.job = job
        self.not_before = not_before
        self.deliveries = 0
        self.duplicate = False    # a copy made by a "duplicate" fault: delivered once, never kept


class Job:
    def __init__(self, request_id, message, runs_on, target, timeout_minutes):
        self.request_id = request_id
        self.message = message
        self.runs_on = runs_on
        self.target = target
        self.timeout_minutes = timeout_minutes
        self.id_token = False    # GenerateIdTokenUrl handed out (§7.11)
        self.state = "queued"     # queued, assigned, running, completed
        self.agent = None
        self.session_id = None
        self.message_id = None
        self.delivered_at = None
        self.locked_until = None
        self.renewals = 0
        self.result = None
        self.outputs = None
        self.completed_via = None
        self.finish_time = None
        self.events = []
        self.cancel_sent = False
        self.assignments = 0
        self.environment = None
        self.violations = []      # protocol-order rules the runner broke (not refusals)
        self.times = {"queued": time.time()}
        p = message["plan"]
        self.plan_id = str(p["planId"]).lower()
        self.scope_id = str(p["scopeIdentifier"]).lower()
        self.hub_name = p["planType"]
        self.plan_version = p["version"]
        self.timeline_id = str(message["timeline"]["id"]).lower()
        self.job_id = str(message["jobId"]).lower()
        self.job_token = None

    def summary(self):
        return {"requestId": self.request_id, "jobId": self.job_id, "planId": self.plan_id,
                "timelineId": self.timeline_id, "scopeIdentifier": self.scope_id, "hubName": self.hub_name,
                "planVersion": self.plan_version, "state": self.state, "result": self.result,
                "outputs": self.outputs, "completedVia": self.completed_via,
                "agent": self.agent.name if self.agent else None,
                "agentId": self.agent.id if self.agent else None, "messageId": self.message_id,
                "lockedUntil": iso(self.locked_until) if self.locked_until else None,
                "renewals": self.renewals, "assignments": self.assignments, "cancelSent": self.cancel_sent,
                "environment": self.environment, "violations": self.violations, "times": self.times}

    def violate(self, rule):
        if rule not in self.violations:
            self.violations.append(rule)

    def mark(self, what):
        self.times.setdefault(what, time.time())


class Fault:
    FIELDS = ("route", "method", "path", "action", "status", "type_key", "message", "error_code",
              "challenge", "delay", "times", "skip", "when")

    def __init__(self, fid, spec):
        unknown = set(spec) - set(self.FIELDS)
        if unknown:
            raise ValueError(f"unknown fault member(s): {', '.join(sorted(unknown))}")
        self.id = fid
        self.route = spec.get("route", "*")
        self.method = (spec.get("method") or "").upper() or None
        self.path = re.compile(spec["path"]) if spec.get("path") else None
        self.action = spec.get("action", "status")
        if self.action not in ("status", "drop", "delay", "duplicate"):
            raise ValueError(f"unknown fault action {self.action!r}")
        self.status = int(spec.get("status", 500))
        self.type_key = spec.get("type_key")
        self.message = spec.get("message") or f"fault injected by fakehub ({self.action})"
        self.error_code = int(spec.get("error_code", 0))
        self.challenge = spec.get("challenge", self.status == 401)
        self.delay = float(spec.get("delay", 0))
        self.times = int(spec.get("times", 1))     # 0: every time
        self.skip = int(spec.get("skip", 0))
        self.when = spec.get("when", "before")     # before or after the request is processed
        self.hits = 0
        self.spec = spec

    def matches(self, route, method, path):
        if self.route not in ("*", route):
            return False
        if self.method and self.method != method:
            return False
        if self.path and not self.path.search(path):
            return False
        return True

    def to_json(self):
        return dict(self.spec, id=self.id, hits=self.hits)


# ---------------------------------------------------------------------------------------------
# Workflows queued through harrier's planner (§11.3: "enqueue a job ... from a workflow").
#
# GitHub's service plans a workflow run job by job: when every job a job `needs` has ended, it
# evaluates that job's `if`, strategy and name against their results and outputs, and queues one
# job message per matrix configuration; fail-fast cancels the other configurations of a job when
# one fails, max-parallel holds back the rest. fakehub does the service's part (ordering, results,
# outputs, fail-fast, max-parallel) and asks a planner for the rest, as a program:
#
#     <planner...> -W <workflow> --dry-run --json --messages-dir DIR --needs NEEDS.json [--secret-file F] [args]
#
# (harrier's: `harrier exec`), which prints {"workflows": [{"jobs": [{"id", "needs", "state":
# done|waiting|skipped|failed|ready, "reason"|"error", "fail_fast", "max_parallel",
# "configurations": [{"index", "name", "matrix", "message": <file>}]}]}]} and writes each ready
# configuration's job message; NEEDS.json holds what the ended jobs left, {"<job>": {"result":
# success|failure|cancelled|skipped, "outputs": {...}}}, here taken from what the runner reported.

# A job request's result (§7.4) as the `needs` context names it.
NEEDS_RESULT = {"succeeded": "success", "succeededWithIssues": "success", "failed": "failure",
                "abandoned": "failure", "canceled": "cancelled", "skipped": "skipped"}


class PlannerError(Exception):
    pass


class WorkflowRun:
    """One workflow queued through the planner; every member is guarded by FakeHub.lock."""

    def __init__(self, run_id, spec, base, folder):
        unknown = set(spec) - {"planner", "workflow", "cwd", "secrets", "args", "runs_on", "agent",
                               "timeout_minutes", "plan_version", "results"}
        if unknown:
            raise ValueError(f"unknown workflow member(s): {', '.join(sorted(unknown))}")
        planner = spec.get("planner")
        if not (isinstance(planner, list) and planner and all(isinstance(a, str) for a in planner)):
            raise ValueError("'planner' must be the planner's command line as a list of strings")
        if not isinstance(spec.get("workflow"), str):
            raise ValueError("'workflow' must be the workflow file's path")
        secrets_ = dict(spec.get("secrets") or {})
        if not all(isinstance(v, str) for v in secrets_.values()):
            raise ValueError("secrets are strings")
        self.id = run_id
        self.planner = list(planner)
        self.workflow = spec["workflow"]
        self.cwd = spec.get("cwd")
        self.secrets = secrets_
        self.args = [str(a) for a in spec.get("args") or []]
        self.queue_kw = {k: spec.get(k) for k in ("runs_on", "agent", "timeout_minutes", "plan_version")}
        self.queue_kw["results"] = bool(spec.get("results"))
        self.base = base
        self.folder = folder
        self.state = "planning"      # planning, running, completed, error
        self.error = None
        self.result = None
        self.plans = 0               # planner calls
        self.jobs = {}               # workflow job id -> its state (summary() shows the shape)
        self.order = []              # job ids in the order they were released
        self.completion = 0          # orders configuration completions (outputs: last one wins)

    def summary(self):
        return {"id": self.id, "workflow": self.workflow, "state": self.state, "error": self.error,
                "result": self.result, "plans": self.plans, "order": list(self.order),
                "jobs": {k: {m: v for m, v in j.items() if m != "messages"} for k, j in self.jobs.items()}}

    def needs(self):
        """What the ended jobs left, as the planner's --needs file wants it."""
        return {k: {"result": j["result"], "outputs": j["outputs"]}
                for k, j in self.jobs.items() if j["state"] == "completed"}


def github_context_set(ctx, values):
    """Sets string members of an encoded `github` dictionary (§6.5)."""
    if not isinstance(ctx, dict) or ctx.get("t") != 2:
        return
    pairs = ctx.setdefault("d", [])
    for key, value in values.items():
        for pair in pairs:
            if str(pair.get("k", "")).lower() == key:
                pair["v"] = value
                break
        else:
            pairs.append({"k": key, "v": value})


def dotenv_quote(value):
    """A double-quoted dotenv value (the planner's --secret-file)."""
    out = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return '"' + out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'


class WorkflowDriver:
    """The FakeHub methods that run WorkflowRuns (mixed into FakeHub)."""

    def queue_workflow(self, spec, base=None):
        """Starts a workflow run; returns it once its first jobs are queued (or planning failed)."""
        with self.lock:
            run_id = len(self.workflow_runs) + 1
            run = WorkflowRun(run_id, spec, (base or self.url).rstrip("/"), None)
            run.folder = tempfile.mkdtemp(prefix=f"workflow-{run_id}-", dir=self.state_dir or None)
            self.workflow_runs[run_id] = run
        threading.Thread(target=self._drive_workflow, args=(run,), name=f"fakehub-workflow-{run_id}",
                         daemon=True).start()
        with self.cond:
            while run.state == "planning" and not self.stopping:
                self.cond.wait(0.5)
            return run.summary()

    def _plan_workflow(self, run, needs):
        """Runs the planner (outside the lock); returns its plan of the workflow."""
        n = run.plans + 1
        messages = os.path.join(run.folder, f"plan-{n}")
        needs_file = os.path.join(run.folder, f"needs-{n}.json")
        with open(needs_file, "w") as f:
            json.dump(needs, f)
        argv = [*run.planner, "-W", run.workflow, "--dry-run", "--json", "--messages-dir", messages,
                "--needs", needs_file]
        if run.secrets:
            secret_file = os.path.join(run.folder, "secrets.env")
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write("".join(f"{k}={dotenv_quote(v)}\n" for k, v in run.secrets.items()))
            argv += ["--secret-file", secret_file]
        argv += run.args
        try:
            p = subprocess.run(argv, cwd=run.cwd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PlannerError(f"the planner did not run: {e}")
        if p.returncode != 0:
            raise PlannerError(f"the planner exited {p.returncode}: {p.stderr.strip()}")
        try:
            plan = json.loads(p.stdout)
            workflows = plan["workflows"]
        except (ValueError, KeyError, TypeError) as e:
            raise PlannerError(f"the planner's output is not a plan ({e}): {p.stdout[:500]}")
        if len(workflows) != 1:
            raise PlannerError(f"the planner planned {len(workflows)} workflows, not one")
        return workflows[0]

    def _drive_workflow(self, run):
        try:
            self._drive_workflow_steps(run)
        finally:
            if not self.state_dir:       # job messages and the secret file: nothing to keep
                shutil.rmtree(run.folder, ignore_errors=True)

    def _drive_workflow_steps(self, run):
        while True:
            with self.lock:
                needs = run.needs()
            try:
                plan = self._plan_workflow(run, needs)
            except PlannerError as e:
                with self.cond:
                    run.state, run.error = "error", str(e)
                    self.cond.notify_all()
                return
            with self.cond:
                run.plans += 1
                try:
                    progress = self._apply_plan(run, plan)
                except (OSError, ValueError, KeyError, TypeError) as e:
                    run.state, run.error = "error", f"cannot apply the plan: {e}"
                    self.cond.notify_all()
                    return
                run.state = "running"
                self.cond.notify_all()
                while not self.stopping:
                    if self._advance_workflow(run):
                        progress = True
                        break                       # a job ended: plan the jobs that needed it
                    if all(j["state"] == "completed" for j in run.jobs.values()):
                        break
                    if not any(j["state"] == "queued" for j in run.jobs.values()):
                        break                       # nothing runs: only the planner can move on
                    self.cond.wait(self.settings["reaper_interval"])
                if self.stopping:
                    return
                if all(j["state"] == "completed" for j in run.jobs.values()):
                    results = [j["result"] for j in run.jobs.values()]
                    run.result = ("failure" if "failure" in results else
                                  "cancelled" if "cancelled" in results else "success")
                    run.state = "completed"
                    self.cond.notify_all()
                    return
                if not progress:
                    waiting = sorted(k for k, j in run.jobs.items() if j["state"] == "waiting")
                    run.state, run.error = "error", f"jobs {', '.join(waiting)} wait for jobs that never end"
                    self.cond.notify_all()
                    return

    def _apply_plan(self, run, plan):
        """Takes the planner's verdict on every job still waiting; True when one moved on."""
        progress = False
        for pj in plan["jobs"]:
            job = run.jobs.get(pj["id"])
            if job is None:
                job = run.jobs[pj["id"]] = {"needs": list(pj.get("needs") or []), "state": "waiting",
                                            "result": None, "outputs": {}, "note": None,
                                            "configurations": []}
            if job["state"] != "waiting" or pj["state"] in ("waiting", "done"):
                continue
            progress = True
            run.order.append(pj["id"])
            if pj["state"] == "skipped":
                self._end_workflow_job(run, job, "skipped", pj.get("reason"))
            elif pj["state"] == "failed":
                self._end_workflow_job(run, job, "failure", pj.get("error"))
            elif pj["state"] == "ready":
                job.update(state="queued", failFast=bool(pj.get("fail_fast", True)),
                           maxParallel=int(pj.get("max_parallel") or 0), failFastTripped=False)
                for c in pj["configurations"]:
                    with open(c["message"], encoding="utf-8") as f:
                        message = json.load(f)
                    job["configurations"].append({"index": c["index"], "name": c["name"],
                                                  "matrix": c.get("matrix"), "state": "held",
                                                  "requestId": None, "result": None, "outputs": None,
                                                  "message": message})
            else:
                raise ValueError(f"job {pj['id']}: unknown state {pj['state']!r}")
        return self._advance_workflow(run) or progress

    def _advance_workflow(self, run):
        """Follows the queued jobs' configurations; True when a workflow job ended."""
        ended = False
        for job in run.jobs.values():
            if job["state"] != "queued":
                continue
            configs = job["configurations"]
            done = sorted((c for c in configs if c["state"] == "queued" and
                           self.jobs[c["requestId"]].state == "completed"),
                          key=lambda c: self.jobs[c["requestId"]].times.get("completed", 0))
            for c in done:
                hub_job = self.jobs[c["requestId"]]
                run.completion += 1
                c.update(state="completed", result=hub_job.result, outputs=dict(hub_job.outputs or {}),
                         completion=run.completion)
                if NEEDS_RESULT.get(hub_job.result) == "failure" and job["failFast"] and not job["failFastTripped"]:
                    # fail-fast: GitHub cancels the job's other configurations, queued or running
                    job["failFastTripped"] = True
                    for other in configs:
                        if other["state"] == "queued":
                            self.cancel_job(self.jobs[other["requestId"]])
            active = sum(1 for c in configs if c["state"] == "queued")
            for c in configs:
                if c["state"] != "held":
                    continue
                if job["failFastTripped"]:
                    c.update(state="completed", result="canceled", outputs={})
                elif job["maxParallel"] <= 0 or active < job["maxParallel"]:
                    self._queue_configuration(run, c)
                    active += 1
            if all(c["state"] == "completed" for c in configs):
                results = [NEEDS_RESULT.get(c["result"], "failure") for c in configs]
                result = ("failure" if "failure" in results else
                          "cancelled" if "cancelled" in results else "success")
                outputs = {}
                # across a matrix the configuration that completed last wins, output by output
                for c in sorted((c for c in configs if c.get("completion")), key=lambda c: c["completion"]):
                    outputs.update({k: v for k, v in c["outputs"].items() if isinstance(v, str) and v})
                self._end_workflow_job(run, job, result, None, outputs)
                ended = True
        return ended

    def _queue_configuration(self, run, config):
        message = config.pop("message")
        ctx = message.get("contextData") or {}
        # the service's own values: one run id for every job of the run, URLs on this service
        github_context_set(ctx.get("github"), {"run_id": str(run.id), "run_number": str(run.id),
                                               "run_attempt": "1", "server_url": run.base,
                                               "api_url": f"{run.base}/api/v3",
                                               "graphql_url": f"{run.base}/api/graphql"})
        queued = self.queue_job(message, base=run.base, **run.queue_kw)
        config.update(state="queued", requestId=queued["requestId"])

    def _end_workflow_job(self, run, job, result, note, outputs=None):
        job.update(state="completed", result=result, note=note, outputs=outputs or {})
        self.cond.notify_all()


class FakeHub(WorkflowDriver):
    """The fake service. start() serves it from a thread; stop() ends it."""

    def __init__(self, host="127.0.0.1", port=0, state_dir=None, routes="real", tenant="fakehubtenant",
                 registration_token=None, pat=None, **settings):
        self.settings = Settings(**settings)
        self.router = Router(routes)
        self.tenant = tenant
        self.host, self.port = host, port
        self.state_dir = state_dir
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.secret = os.urandom(32)
        self.instance_id = new_guid()
        self.tokens = {}
        self.agents = {}
        self.next_agent_id = 1
        self.pools = [
            {"id": 1, "name": "Default", "isHosted": False, "isInternal": True},
            {"id": 2, "name": "GitHub Actions", "isHosted": True, "isInternal": False},
        ]
        self.sessions = {}
        self.dead_sessions = {}
        self.next_message_id = 1
        self.jobs = {}
        self.workflow_runs = {}
        self.queue = []
        self.next_request_id = 1
        self.timelines = {}
        self.logs = {}
        self.next_log_id = 1
        self.feeds = {}
        self.attachments = {}
        self.results = {}
        self.blobs = {}
        self.actions = {}
        self.tarballs = {}
        self.used_jti = set()
        self.requests = []
        self.faults = []
        self.next_fault_id = 1
        self.pat = pat or "ghp_fakehub" + secrets.token_hex(8)
        self.registration_token = self.issue_opaque("registration", registration_token)
        self.server = None
        self.thread = None
        self.stopping = False
        self.requests_file = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self):
        handler = type("BoundHandler", (Handler,), {"hub": self})
        self.server = http.server.ThreadingHTTPServer((self.host, self.port), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{self.host}:{self.port}"
        if self.state_dir:
            os.makedirs(self.state_dir, exist_ok=True)
            self.requests_file = open(os.path.join(self.state_dir, "requests.jsonl"), "a", encoding="utf-8")
            for name, text in (("url", self.url), ("registration-token", self.registration_token),
                               ("pat", self.pat)):
                with open(os.path.join(self.state_dir, name), "w") as f:
                    f.write(text + "\n")
        self.thread = threading.Thread(target=self.server.serve_forever, name="fakehub", daemon=True)
        self.thread.start()
        self.reaper = threading.Thread(target=self._reap_loop, name="fakehub-reaper", daemon=True)
        self.reaper.start()
        return self

    def stop(self):
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        if self.requests_file:
            self.requests_file.close()
            self.requests_file = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def tenant_url(self):
        return f"{self.url}/t/{self.tenant}/"

    def base_for(self, host_header):
        """The URL a client reached us by (the Host header), so that GHES checks hold (§2.5)."""
        return f"http://{host_header}" if host_header else self.url

    # --- tokens ------------------------------------------------------------------------------

    def issue_opaque(self, kind, value=None, lifetime=3600.0, subject=None):
        value = value or secrets.token_hex(15).upper()
        self.tokens[value] = Token(value, kind, subject, time.time() + lifetime)
        return value

    def issue_jwt(self, kind, subject, lifetime, claims=None):
        now = int(time.time())
        payload = {"iss": "fakehub", "sub": str(subject), "kind": kind, "nbf": now, "exp": now + int(lifetime),
                   "jti": new_guid()}
        payload.update(claims or {})
        head = b64url(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        body = b64url(json.dumps(payload).encode())
        sig = b64url(hmac.new(self.secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
        value = f"{head}.{body}.{sig}"
        self.tokens[value] = Token(value, kind, subject, time.time() + lifetime)
        return value

    # --- request log -------------------------------------------------------------------------

    def record(self, entry):
        with self.lock:
            entry["seq"] = len(self.requests) + 1
            self.requests.append(entry)
            if self.requests_file:
                self.requests_file.write(json.dumps(entry) + "\n")
                self.requests_file.flush()

    # --- faults ------------------------------------------------------------------------------

    def add_fault(self, spec):
        with self.lock:
            fault = Fault(self.next_fault_id, spec)
            self.next_fault_id += 1
            self.faults.append(fault)
            return fault.to_json()

    def take_fault(self, route, method, path, actions=None):
        with self.lock:
            for fault in self.faults:
                if actions and fault.action not in actions:
                    continue
                if not actions and fault.action == "duplicate":
                    continue
                if fault.matches(route, method, path):
                    fault.hits += 1
                    if fault.hits <= fault.skip:
                        continue
                    if fault.times and fault.hits - fault.skip >= fault.times:
                        self.faults.remove(fault)
                    return fault
        return None

    # --- jobs --------------------------------------------------------------------------------

    def queue_job(self, message, runs_on=None, agent=None, plan_version=None, timeout_minutes=None,
                  keep_endpoints=False, base=None, results=False, id_token=False):
        """Queues a job from a hand-written job message (§6); fills what identifies the job."""
        base = (base or self.url).rstrip("/")
        msg = as_ci(message)
        with self.lock:
            request_id = self.next_request_id
            self.next_request_id += 1
            msg["messageType"] = "PipelineAgentJobRequest"
            plan = msg.get("plan")
            if not isinstance(plan, dict):
                plan = msg["plan"] = CIDict()
            plan.setdefault("scopeIdentifier", new_guid())
            plan.setdefault("planType", "build")
            if plan_version is not None:
                plan["version"] = plan_version
            plan.setdefault("version", self.settings["plan_version"])
            plan.setdefault("planId", new_guid())
            plan.setdefault("planGroup", plan["planType"])
            plan.setdefault("artifactUri", f"{base}/artifact/{plan['planId']}")
            plan.setdefault("artifactLocation", None)
            plan.setdefault("definition", {"id": 0, "name": "fakehub"})
            plan.setdefault("owner", {"id": 0, "name": "fakehub"})
            timeline = msg.get("timeline")
            if not isinstance(timeline, dict):
                timeline = msg["timeline"] = CIDict()
            timeline.setdefault("id", new_guid())
            timeline.setdefault("changeId", 1)
            timeline.setdefault("location", None)
            msg.setdefault("jobId", new_guid())
            msg.setdefault("jobName", "build")
            msg.setdefault("jobDisplayName", msg["jobName"])
            msg["requestId"] = request_id
            msg["lockedUntil"] = iso(time.time() + self.settings["lock_seconds"])
            job = Job(request_id, msg, runs_on, agent, timeout_minutes)
            variables = msg.get("variables")
            if not isinstance(variables, dict):
                variables = msg["variables"] = CIDict()
            if not (variables.get("system.github.token") or {}).get("value"):
                # GitHub always hands a job its GITHUB_TOKEN; a planner without one leaves it empty
                gh = "ghs_" + secrets.token_hex(18)
                self.tokens[gh] = Token(gh, "github", request_id, time.time() + self.settings["job_token_lifetime"])
                variables["system.github.token"] = {"value": gh, "isSecret": True}
                if not (variables.get("github_token") or {}).get("value"):
                    variables["github_token"] = {"value": gh, "isSecret": True}
            variables.setdefault("system.github.job", {"value": msg["jobName"]})
            variables.setdefault("system.runnerGroupName", {"value": "Default"})
            if results:
                variables["system.github.results_endpoint"] = {"value": f"{base}/results/"}
            ctx = msg.get("contextData")
            if not isinstance(ctx, dict):
                ctx = msg["contextData"] = CIDict()
            if ctx.get("github") is None:
                ctx["github"] = {"t": 2, "d": [
                    {"k": "repository", "v": "octo-org/octo-repo"}, {"k": "server_url", "v": base},
                    {"k": "api_url", "v": f"{base}/api/v3"}, {"k": "event_name", "v": "push"},
                    {"k": "run_id", "v": str(request_id)}, {"k": "run_number", "v": "1"},
                    {"k": "run_attempt", "v": "1"}, {"k": "event", "v": {"t": 2}}]}
            for name in ("inputs", "vars", "needs"):
                if ctx.get(name) is None:
                    ctx[name] = {"t": 2}
            msg.setdefault("steps", [])
            msg.setdefault("mask", [])
            resources = msg.get("resources")
            if not isinstance(resources, dict):
                resources = msg["resources"] = CIDict()
            endpoints = resources.get("endpoints") or []
            if not keep_endpoints:
                endpoints = [e for e in endpoints
                             if not (isinstance(e, dict) and str(e.get("name", "")).lower() == "systemvssconnection")]
                job.job_token = self.issue_jwt(
                    "job", request_id, self.settings["job_token_lifetime"],
                    {"orch_id": f"{plan['planId']}.{msg['jobName']}.__default", "scp": "Actions.Results",
                     "plan_id": plan["planId"], "job_id": msg["jobId"]})
                tenant = f"{base}/t/{self.tenant}/"
                endpoints.append({"id": EMPTY_GUID, "name": "SystemVssConnection", "type": "ExternalTfs",
                                  "url": tenant,
                                  "authorization": {"scheme": "OAuth", "parameters": {"AccessToken": job.job_token}},
                                  "isShared": False, "isReady": True,
                                  "data": {"CacheServerUrl": f"{base}/_cache/", "PipelinesServiceUrl": tenant,
                                           "ResultsServiceUrl": f"{base}/results/"}})
                if id_token:
                    endpoints[-1]["data"]["GenerateIdTokenUrl"] = f"{base}/_oidc/token?api-version=2.0"
            job.id_token = bool(id_token)
            resources["endpoints"] = endpoints
            resources.setdefault("repositories", [])
            resources.setdefault("containers", [])
            self.jobs[request_id] = job
            self.timelines[job.timeline_id] = {
                "id": job.timeline_id, "changeId": 1, "job": request_id,
                "records": {job.job_id: {"id": job.job_id, "parentId": None, "type": "Job",
                                         "name": msg["jobDisplayName"], "refName": msg["jobName"],
                                         "state": "pending", "result": None, "order": None}}}
            self.feeds[request_id] = {}
            self.results[request_id] = {"steps": {}, "updates": [], "metadata": [], "blobs": {}}
            self.queue.append(job)
            self.cond.notify_all()
            return job.summary()

    def job_matches(self, job, agent):
        if job.target is not None and str(job.target) not in (str(agent.id), agent.name):
            return False
        names = {l["name"].lower() for l in agent.labels}
        return all(str(l).lower() in names for l in (job.runs_on or []))

    def requeue(self, job, why):
        job.state = "queued"
        if job.agent and job.agent.job is job:
            job.agent.job = None
        job.agent = None
        job.session_id = None
        job.locked_until = None
        job.events.append({"time": iso(), "requeued": why})
        if job not in self.queue:
            self.queue.insert(0, job)
        self.cond.notify_all()

    def complete(self, job, result, via, outputs=None):
        if job.state == "completed":
            return
        job.mark("completed")
        job.state = "completed"
        job.result = result
        job.completed_via = via
        job.finish_time = iso()
        if outputs is not None:
            job.outputs = outputs
        if job in self.queue:
            self.queue.remove(job)
        if job.agent and job.agent.job is job:
            job.agent.job = None
        rec = self.timelines.get(job.timeline_id, {}).get("records", {}).get(job.job_id)
        if rec is not None and via in ("lock-expired", "runner-deleted"):
            rec.update(state="completed", result=result)
        self.cond.notify_all()

    def end_session(self, session, why):
        if session.dead:
            return
        session.dead = why
        self.sessions.pop(session.id, None)
        self.dead_sessions[session.id] = why
        if session.agent.session is session:
            session.agent.session = None
        for msg in session.unacked:
            if msg.job and msg.job.state == "assigned" and msg.job.session_id == session.id:
                self.requeue(msg.job, f"session {why} before the job message was deleted")
        self.cond.notify_all()

    def delete_agent(self, agent):
        agent.deleted = True
        self.agents.pop(agent.id, None)
        if agent.session:
            self.end_session(agent.session, "runner deleted")
        if agent.job and agent.job.state != "completed":
            self.complete(agent.job, "failed", "runner-deleted")
        self.cond.notify_all()

    def cancel_job(self, job, timeout="00:05:00"):
        """Queues a JobCancellation for the agent running the job, >= cancel_delay after it got it."""
        if job.state == "queued":
            self.complete(job, "canceled", "canceled-in-queue")
            return
        if job.state == "completed" or job.agent is None or job.agent.session is None:
            return
        body = json.dumps({"jobId": job.job_id, "timeout": timeout})
        not_before = (job.delivered_at or 0) + self.settings["cancel_delay"]
        job.agent.session.outbox.append(Message("JobCancellation", body, not_before=not_before))
        job.cancel_sent = True
        self.cond.notify_all()

    def _reap_loop(self):
        while True:
            with self.cond:
                if self.stopping:
                    return
                now = time.time()
                for s in list(self.sessions.values()):
                    if s.polls == 0 and now - s.last_activity > self.settings["session_expiry"]:
                        self.end_session(s, "expired")
                for job in list(self.jobs.values()):
                    if job.state in ("assigned", "running") and job.locked_until and now > job.locked_until:
                        self.complete(job, "abandoned", "lock-expired")
                    if (job.state == "running" and job.timeout_minutes and not job.cancel_sent
                            and now > job.delivered_at + job.timeout_minutes * 60):
                        self.cancel_job(job)
                self.cond.wait(self.settings["reaper_interval"])

    # --- actions -----------------------------------------------------------------------------

    def add_action(self, name, ref, files, sha=None):
        """Registers owner/repo@ref whose tarball holds files (path -> text or bytes)."""
        owner, repo = name.split("/", 1)
        blob = json.dumps(sorted((k, v if isinstance(v, str) else base64.b64encode(v).decode())
                                 for k, v in files.items())).encode()
        sha = sha or hashlib.sha1(blob + name.encode()).hexdigest()
        top = f"{owner}-{repo}-{sha[:7]}"
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            info = tarfile.TarInfo(top)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
            for path, content in sorted(files.items()):
                data = content.encode() if isinstance(content, str) else content
                info = tarfile.TarInfo(f"{top}/{path}")
                info.size = len(data)
                info.mode = 0o755 if path.endswith(".sh") else 0o644
                tar.addfile(info, io.BytesIO(data))
        with self.lock:
            self.actions[(name.lower(), ref)] = {"name": name, "ref": ref, "sha": sha}
            self.tarballs[(owner.lower(), repo.lower(), sha)] = gzip.compress(raw.getvalue())
        return {"name": name, "ref": ref, "sha": sha}


# ---------------------------------------------------------------------------------------------
# Crypto helpers (§3.1, §4.1, §4.3).


def public_key_from(exponent_b64, modulus_b64):
    e = int.from_bytes(base64.b64decode(exponent_b64, validate=True), "big")
    n = int.from_bytes(base64.b64decode(modulus_b64, validate=True), "big")
    return rsa.RSAPublicNumbers(e, n).public_key()


def encrypt_message(key, plaintext):
    iv = os.urandom(16)
    padder = sympadding.PKCS7(128).padder()
    data = padder.update(plaintext) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return iv, enc.update(data) + enc.finalize()


def wrap_session_key(public_key, key, fips):
    h = hashes.SHA256() if fips else hashes.SHA1()
    return public_key.encrypt(key, padding.OAEP(mgf=padding.MGF1(algorithm=h), algorithm=h, label=None))


# ---------------------------------------------------------------------------------------------
# HTTP


class DropConnection(Exception):
    pass


class Response:
    def __init__(self, status=200, body=None, content_type="application/json", headers=None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakehub/1"
    timeout = 300
    hub = None

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_GET

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def dispatch(self):
        hub = self.hub
        started = time.time()
        self.body = self.read_body()
        parsed = urllib.parse.urlsplit(self.path)
        self.route_path = urllib.parse.unquote(parsed.path)
        self.query = CIDict((k, v[-1]) for k, v in urllib.parse.parse_qs(parsed.query, keep_blank_values=True).items())
        self.route = "unknown"
        self.route_values = {}
        self.admin = self.route_path.startswith("/_admin/")
        entry = {"time": iso(started), "method": self.command, "path": self.route_path, "query": parsed.query,
                 "headers": {k: v for k, v in self.headers.items()}, "body": self.body_for_log()}
        fault = None
        drop = False
        try:
            try:
                handler = self.resolve()
                if not self.admin:
                    fault = hub.take_fault(self.route, self.command, self.route_path)
                if fault and fault.when == "before":
                    self.apply_fault(fault)
                resp = handler()
                if fault and fault.when == "after":
                    self.apply_fault(fault)
            except HttpError as e:
                headers = dict(e.headers)
                if e.content_type == "application/json":
                    resp = Response(e.status, e.body, headers=headers)
                else:
                    resp = Response(e.status, e.body, e.content_type, headers)
                entry["refused"] = e.reason
                if "WWW-Authenticate" in headers:
                    entry["challenge"] = True
        except DropConnection:
            drop = True
            resp = None
        except Exception as e:  # a bug in fakehub: say so loudly
            import traceback
            traceback.print_exc()
            resp = Response(500, {"message": f"fakehub internal error: {e}"})
            entry["refused"] = f"internal error: {e!r}"
        entry["route"] = self.route
        if fault:
            entry["fault"] = fault.to_json()
        entry["status"] = None if drop else resp.status
        entry["ms"] = round((time.time() - started) * 1000, 1)
        if not self.admin:
            hub.record(entry)
        if drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.send(resp)

    def body_for_log(self):
        if not self.body:
            return None
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(self.body).decode()}

    def apply_fault(self, fault):
        if fault.action == "delay":
            time.sleep(fault.delay)
        elif fault.action == "drop":
            raise DropConnection()
        elif fault.action == "status":
            headers = {}
            if fault.status == 401 and fault.challenge:
                headers["WWW-Authenticate"] = f'Bearer authorization_uri="{self.hub.tenant_url}_apis/oauth2/token"'
            if fault.type_key:
                e = vss_error(fault.status, fault.type_key, fault.message, fault.error_code)
                e.headers = headers
                raise e
            raise HttpError(fault.status, fault.message, {"message": fault.message}, headers)

    def send(self, resp):
        body = resp.body
        if body is None:
            data = b""
        elif isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
        try:
            self.send_response(resp.status)
            if data or resp.status not in (204, 304):
                ctype = resp.content_type
                if ctype == "application/json":
                    ctype = "application/json; charset=utf-8"
                self.send_header("Content-Type", ctype)
            for k, v in resp.headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # the client went away: a delivered message stays undeleted and is delivered again
            self.close_connection = True

    # --- request helpers ---------------------------------------------------------------------

    def host_base(self):
        return self.hub.base_for(self.headers.get("Host"))

    def content_type(self):
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def json_body(self, content_type="application/json"):
        if self.content_type() != content_type:
            raise HttpError(415, f"Content-Type must be {content_type}, got "
                                 f"{self.headers.get('Content-Type')!r}",
                            {"message": f"unsupported media type; expected {content_type}",
                             "typeKey": "UnsupportedMediaTypeException"})
        try:
            return loads_ci(self.body)
        except (ValueError, UnicodeDecodeError) as e:
            raise bad_request(f"body is not JSON: {e}")

    def octet_body(self):
        if self.content_type() != "application/octet-stream":
            raise HttpError(415, f"Content-Type must be application/octet-stream, got "
                                 f"{self.headers.get('Content-Type')!r}",
                            {"message": "unsupported media type; expected application/octet-stream",
                             "typeKey": "UnsupportedMediaTypeException"})
        return self.body

    def bearer(self, kinds, challenge=True):
        """The valid token of one of `kinds`, or a 401 (with a Bearer challenge, §3.4)."""
        hub = self.hub
        headers = {}
        if challenge:
            headers["WWW-Authenticate"] = f'Bearer authorization_uri="{hub.tenant_url}_apis/oauth2/token"'
        auth = self.headers.get("Authorization") or ""
        if not auth:
            raise HttpError(401, "no Authorization header (Bearer challenge)", {"message": "Unauthorized"}, headers)
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer":
            raise HttpError(401, f"wrong authorization scheme {scheme!r}; Bearer needed",
                            {"message": "Unauthorized"}, headers)
        with hub.lock:
            tok = hub.tokens.get(value.strip())
            if tok is None:
                raise HttpError(401, "unknown bearer token", {"message": "Unauthorized"}, headers)
            if not tok.valid(time.time()):
                raise HttpError(401, f"{KIND_NAMES[tok.kind]} expired or revoked", {"message": "Unauthorized"},
                                headers)
            if tok.kind not in kinds:
                need = " or ".join(KIND_NAMES[k] for k in kinds)
                raise HttpError(401, f"wrong token kind: a {KIND_NAMES[tok.kind]} where a {need} is needed",
                                {"message": "Unauthorized"}, headers)
            return tok

    def runner_agent(self):
        tok = self.bearer(("runner",))
        agent = self.hub.agents.get(tok.subject)
        if agent is None:
            raise vss_error(404, "TaskAgentNotFoundException", f"Agent {tok.subject} was not found.")
        return agent

    # --- routing -----------------------------------------------------------------------------

    def resolve(self):
        p = self.route_path
        hub = self.hub
        if self.admin:
            self.route = "admin"
            return self.admin_api
        if p.startswith("/api/v3/"):
            return self.github_api(p[len("/api/v3"):])
        if p.startswith("/results/"):
            if p.startswith("/results/_blob/"):
                self.route = "blob"
                return self.results_blob
            self.route = "results"
            return self.results_twirp
        if p.startswith("/_actions/tarball/"):
            self.route = "tarball"
            return self.tarball
        if p == "/_oidc/token":
            self.route = "oidc"
            return self.oidc_token
        prefix = f"/t/{hub.tenant}"
        if p == prefix or p.startswith(prefix + "/"):
            rel = p[len(prefix):] or "/"
            if rel.rstrip("/").lower() == "/_apis/connectiondata" and self.command == "GET":
                self.route = "connectionData"
                return self.connection_data
            if rel.rstrip("/").lower() == "/_apis" and self.command == "OPTIONS":
                self.route = "options"
                return lambda: Response(200, b"", "text/plain")
            if rel.rstrip("/").lower() == "/_apis/oauth2/token":
                self.route = "oauth"
                if self.command != "POST":
                    raise HttpError(405, "token endpoint takes POST")
                return self.oauth_token
            m = hub.router.match(self.command, rel)
            if m:
                self.route, self.route_values = m
                return getattr(self, "loc_" + self.route)
        raise HttpError(404, f"no such resource: {self.command} {p}")

    # --- GitHub API (§2.3, §2.4, §2.10) ------------------------------------------------------

    def github_api(self, rel):
        if rel == "/actions/runner-registration":
            self.route = "registration"
            if self.command != "POST":
                raise HttpError(405, "runner-registration takes POST")
            return self.runner_registration
        m = re.fullmatch(r"/(repos/[^/]+/[^/]+|orgs/[^/]+|enterprises/[^/]+)/actions/runners/"
                         r"(registration-token|remove-token|generate-jitconfig)", rel)
        if m and self.command == "POST":
            self.route = "jitconfig" if m.group(2) == "generate-jitconfig" else "pat"
            self.scope_path = m.group(1)
            return self.generate_jitconfig if m.group(2) == "generate-jitconfig" else \
                (lambda: self.pat_token(m.group(2).split("-")[0]))
        raise HttpError(404, f"no such API: {self.command} /api/v3{rel}", {"message": "Not Found"})

    def check_pat(self, allow_bearer):
        auth = self.headers.get("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        pat = None
        if scheme.lower() == "basic":
            try:
                pat = base64.b64decode(value).decode().partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                pat = None
        elif scheme.lower() in ("bearer", "token") and allow_bearer:
            pat = value.strip()
        if pat != self.hub.pat:
            raise HttpError(401, "bad PAT credentials", {"message": "Bad credentials"})

    def pat_token(self, kind):
        self.check_pat(allow_bearer=False)
        with self.hub.lock:
            token = self.hub.issue_opaque(kind, lifetime=3600)
        return Response(201, {"token": token, "expires_at": iso(time.time() + 3600)})

    def runner_registration(self):
        hub = self.hub
        auth = self.headers.get("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        if scheme != "RemoteAuth":
            raise HttpError(401, f"runner-registration needs 'RemoteAuth <token>', got scheme {scheme!r}",
                            {"message": "Requires authentication"})
        body = self.json_body()
        url = member(body, "url", str)
        event = member(body, "runner_event", str)
        if event not in ("register", "remove"):
            raise HttpError(400, f"runner_event must be 'register' or 'remove', got {event!r}")
        if not urllib.parse.urlsplit(url).scheme in ("http", "https"):
            raise HttpError(400, f"url {url!r} is not an absolute http(s) URL")
        with hub.lock:
            tok = hub.tokens.get(value.strip())
            want = "registration" if event == "register" else "remove"
            if tok is None or not tok.valid(time.time()) or tok.kind != want:
                why = ("unknown" if tok is None else "expired" if not tok.valid(time.time())
                       else f"a {KIND_NAMES[tok.kind]}, not a {KIND_NAMES[want]}")
                raise HttpError(404, f"registration token refused ({why})", {"message": "Not Found"})
            admin = hub.issue_jwt("admin", url, 3600)
        base = self.host_base()
        return Response(200, {"url": f"{base}/t/{hub.tenant}/", "token_schema": "OAuthAccessToken",
                              "token": admin, "use_v2_flow": False})

    def generate_jitconfig(self):
        hub = self.hub
        self.check_pat(allow_bearer=True)
        body = self.json_body()
        name = member(body, "name", str)
        group = int_member(body, "runner_group_id")
        labels = member(body, "labels", list, required=False) or ["self-hosted"]
        work = member(body, "work_folder", str, required=False) or "_work"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        base = self.host_base()
        with hub.lock:
            if not any(p["id"] == group for p in hub.pools):
                raise HttpError(404, f"runner group {group} not found", {"message": "Not Found"})
            if any(a.name.lower() == name.lower() for a in hub.agents.values()):
                raise HttpError(409, f"a runner named {name} exists", {"message": "Already exists"})
            agent = hub_create_agent(hub, base, group, {
                "name": name, "version": "2.336.0", "ephemeral": True, "disableUpdate": False,
                "labels": [{"name": l, "type": "user"} for l in labels]}, key.public_key())
        nums = key.private_numbers()
        half = 128

        def b(n, size):
            return base64.b64encode(n.to_bytes(size, "big")).decode()
        files = {
            ".runner": {"AgentId": str(agent.id), "AgentName": agent.name, "PoolId": str(group),
                        "PoolName": next(p["name"] for p in hub.pools if p["id"] == group),
                        "ServerUrl": f"{base}/t/{hub.tenant}/",
                        "GitHubUrl": f"{base}/{self.scope_path.split('/', 1)[1]}",
                        "WorkFolder": work, "Ephemeral": "True", "DisableUpdate": "False"},
            ".credentials": {"Scheme": "OAuth", "Data": {"ClientId": agent.client_id,
                                                          "AuthorizationUrl": agent.authorization_url,
                                                          "RequireFipsCryptography": "True"}},
            ".credentials_rsaparams": {"d": b(nums.d, 256), "dp": b(nums.dmp1, half), "dq": b(nums.dmq1, half),
                                       "exponent": "AQAB", "inverseQ": b(nums.iqmp, half),
                                       "modulus": b(nums.public_numbers.n, 256), "p": b(nums.p, half),
                                       "q": b(nums.q, half)},
        }
        blob = base64.b64encode(json.dumps({k: base64.b64encode(json.dumps(v).encode()).decode()
                                            for k, v in files.items()}).encode()).decode()
        return Response(201, {"runner": {"id": agent.id, "name": agent.name, "os": "unknown", "status": "offline",
                                         "busy": False, "labels": agent.labels},
                              "encoded_jit_config": blob})

    # --- tenant: discovery and OAuth (§1.3, §3) ----------------------------------------------

    def connection_data(self):
        return Response(200, {
            "instanceId": self.hub.instance_id, "deploymentId": self.hub.instance_id,
            "locationServiceData": {"serviceOwner": EMPTY_GUID, "defaultAccessMappingMoniker": "PublicAccessMapping",
                                    "lastChangeId": 1, "lastChangeId64": 1,
                                    "serviceDefinitions": self.hub.router.service_definitions()}})

    def oauth_token(self):
        hub = self.hub
        if self.content_type() != "application/x-www-form-urlencoded":
            raise oauth_error("invalid_request", "Content-Type must be application/x-www-form-urlencoded, got "
                              f"{self.headers.get('Content-Type')!r}")
        form = urllib.parse.parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        form = {k: v[-1] for k, v in form.items()}
        if form.get("grant_type") != "client_credentials":
            raise oauth_error("unsupported_grant_type", f"grant_type must be client_credentials, got "
                              f"{form.get('grant_type')!r}")
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise oauth_error("invalid_request", f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}")
        assertion = form.get("client_assertion") or ""
        parts = assertion.split(".")
        if len(parts) != 3:
            raise oauth_error("invalid_client", "client_assertion is not a JWT")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
        except ValueError:
            raise oauth_error("invalid_client", "client_assertion is not a well-formed JWT")
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise oauth_error("invalid_client", "client_assertion is not a well-formed JWT")
        alg = header.get("alg")
        if alg not in ("RS256", "PS256"):
            raise oauth_error("invalid_client", f"JWT alg {alg!r} is not RS256 or PS256")
        sub, iss = claims.get("sub"), claims.get("iss")
        if not sub or sub != iss:
            raise oauth_error("invalid_client", "JWT sub and iss must both be the client id")
        with hub.lock:
            agent = next((a for a in hub.agents.values() if a.client_id == sub), None)
            if agent is None:
                raise oauth_error("invalid_client", f"No client with id '{sub}' is registered.")
            key = agent.public_key
            aud_expected = agent.authorization_url
        signed = f"{parts[0]}.{parts[1]}".encode()
        try:
            if alg == "RS256":
                key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
            else:
                key.verify(signature, signed, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                           hashes.SHA256())
        except InvalidSignature:
            raise oauth_error("invalid_client", f"JWT signature ({alg}) does not verify with the registered key")
        if claims.get("aud") != aud_expected:
            raise oauth_error("invalid_client", f"JWT aud {claims.get('aud')!r} is not {aud_expected!r}")
        now = time.time()
        skew = hub.settings["clock_skew"]
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise oauth_error("invalid_client", "JWT exp claim missing or not a number")
        if nbf is not None and (not isinstance(nbf, (int, float)) or isinstance(nbf, bool)):
            raise oauth_error("invalid_client", "JWT nbf claim is not a number")
        # Not invalid_client: the official runner reads invalid_client as "registration deleted"
        # before it looks for the clock-skew text.
        if now > exp + skew:
            raise oauth_error("invalid_grant", f"The bearer token expired on {iso(exp)}. "
                              f"Current server time is {iso(now)}.")
        if nbf is not None and now < nbf - skew:
            raise oauth_error("invalid_grant", f"The bearer token is not valid until {iso(nbf)}. "
                              f"Current server time is {iso(now)}.")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise oauth_error("invalid_client", "JWT jti claim missing")
        with hub.lock:
            if (sub, jti) in hub.used_jti:
                raise oauth_error("invalid_client", f"JWT jti {jti} was already used")
            hub.used_jti.add((sub, jti))
            if agent.deleted:
                raise oauth_error("invalid_client", f"No client with id '{sub}' is registered.")
            lifetime = hub.settings["token_lifetime"]
            token = hub.issue_jwt("runner", agent.id, lifetime, {"runner_id": agent.id, "client_id": sub})
        return Response(200, {"access_token": token, "token_type": "bearer", "expires_in": int(lifetime),
                              "scope": "/tenant"})

    # --- pools and agents (§2.6) -------------------------------------------------------------

    def loc_pools(self):
        self.bearer(("admin", "runner"))
        pools = self.hub.pools
        name = self.query.get("poolName")
        if "poolId" in self.route_values:
            pools = [p for p in pools if str(p["id"]) == self.route_values["poolId"]]
            if not pools:
                raise vss_error(404, "TaskAgentPoolNotFoundException", "pool not found")
            return Response(200, self.pool_json(pools[0]))
        if name:
            pools = [p for p in pools if p["name"].lower() == name.lower()]
        return Response(200, {"count": len(pools), "value": [self.pool_json(p) for p in pools]})

    def pool_json(self, p):
        with self.hub.lock:
            size = sum(1 for a in self.hub.agents.values() if a.pool_id == p["id"])
        return {"id": p["id"], "name": p["name"], "isHosted": p["isHosted"], "isInternal": p["isInternal"],
                "poolType": "automation", "scope": self.hub.instance_id, "size": size, "createdOn": iso(0),
                "autoProvision": None, "targetSize": None, "properties": {}}

    def loc_agents(self):
        hub = self.hub
        self.bearer(("admin",))
        pool_id = self.route_values.get("poolId")
        agent_id = self.route_values.get("agentId")
        base = self.host_base()
        with hub.lock:
            pool = None
            if pool_id not in (None, "0"):
                pool = next((p for p in hub.pools if str(p["id"]) == pool_id), None)
                if pool is None:
                    raise vss_error(404, "TaskAgentPoolNotFoundException", f"Agent pool {pool_id} not found.")
            if self.command == "GET" and agent_id is None:
                name = self.query.get("agentName")
                found = [a for a in hub.agents.values()
                         if (pool is None or a.pool_id == pool["id"]) and (name is None or a.name.lower() == name.lower())]
                return Response(200, {"count": len(found), "value": [a.to_json(hub.settings, base) for a in found]})
            if self.command == "POST":
                if agent_id is not None or pool is None:
                    raise bad_request("POST agents needs a pool id and no agent id")
                body = self.json_body()
                key = self.check_public_key(body)
                name = member(body, "name", str)
                if any(a.name.lower() == name.lower() for a in hub.agents.values()):
                    raise vss_error(409, "TaskAgentExistsException",
                                    f"A runner exists with the same name {name} in pool {pool['name']}.")
                agent = hub_create_agent(hub, base, pool["id"], body, key)
                return Response(200, agent.to_json(hub.settings, base))
            if agent_id is None:
                raise bad_request(f"{self.command} agents needs an agent id")
            agent = hub.agents.get(int(agent_id)) if agent_id.isdigit() else None
            if agent is None:
                raise vss_error(404, "TaskAgentNotFoundException", f"Agent {agent_id} was not found.")
            if self.command == "GET":
                return Response(200, agent.to_json(hub.settings, base))
            if self.command == "DELETE":
                hub.delete_agent(agent)
                return Response(204)
            body = self.json_body()
            key = self.check_public_key(body) if self.command == "PUT" else agent.public_key
            if self.command == "PUT":
                name = member(body, "name", str)
                if any(a.name.lower() == name.lower() and a is not agent for a in hub.agents.values()):
                    raise vss_error(409, "TaskAgentExistsException", f"A runner exists with the same name {name}.")
                body_id = body.get("id")
                if body_id not in (None, 0, agent.id, str(agent.id)):
                    raise bad_request(f"body id {body_id} does not match agent {agent.id}")
                agent.update(body, key)
                if pool is not None:
                    agent.pool_id = pool["id"]
                # A replaced registration has a new key: the old runner's tokens and session end.
                for tok in hub.tokens.values():
                    if tok.kind == "runner" and tok.subject == agent.id:
                        tok.revoked = True
                if agent.session:
                    hub.end_session(agent.session, "runner replaced")
            else:
                merged = {"name": agent.name, "version": agent.version, "labels": agent.labels,
                          "ephemeral": agent.ephemeral, "disableUpdate": agent.disable_update,
                          "osDescription": agent.os_description}
                for k, v in body.items():
                    if camel(k) in merged and v is not None:
                        merged[camel(k)] = v
                agent.update(merged, key)
            return Response(200, agent.to_json(hub.settings, base))

    def check_public_key(self, body):
        auth = member(body, "authorization", dict)
        pk = member(auth, "publicKey", dict, where="authorization")
        exponent = member(pk, "exponent", str, where="authorization.publicKey")
        modulus = member(pk, "modulus", str, where="authorization.publicKey")
        try:
            key = public_key_from(exponent, modulus)
        except (ValueError, TypeError) as e:
            raise bad_request(f"authorization.publicKey is not a valid RSA key: {e}")
        if key.key_size < 2048:
            raise bad_request(f"authorization.publicKey has {key.key_size} bits; 2048 or more needed")
        mod = base64.b64decode(modulus)
        if mod[:1] == b"\x00":
            raise bad_request("authorization.publicKey.modulus has a leading zero byte (must be unsigned, minimal)")
        return key

    # --- sessions and messages (§4) ----------------------------------------------------------

    def loc_sessions(self):
        hub = self.hub
        agent = self.runner_agent()
        pool_id = self.route_values.get("poolId")
        if self.command == "DELETE":
            sid = self.route_values.get("sessionId")
            if sid is None:
                raise bad_request("DELETE sessions needs a session id")
            with hub.lock:
                s = hub.sessions.get(sid)
                if s is not None and s.agent is agent:
                    hub.end_session(s, "deleted")
            return Response(204)
        body = self.json_body()
        ref = member(body, "agent", dict)
        agent_id = int_member(ref, "id", where="agent")
        member(ref, "name", str, where="agent")
        owner = member(body, "ownerName", str, required=False) or ""
        with hub.lock:
            if not any(str(p["id"]) == pool_id for p in hub.pools):
                raise vss_error(404, "TaskAgentPoolNotFoundException", f"Agent pool {pool_id} not found.")
            if agent.deleted:
                raise vss_error(404, "TaskAgentNotFoundException", f"Agent {agent.id} was not found.")
            if agent_id != agent.id or str(agent.pool_id) != pool_id:
                raise vss_error(403, "AccessDeniedException",
                                f"The token is for agent {agent.id} in pool {agent.pool_id}, not agent {agent_id} "
                                f"in pool {pool_id}.")
            live = agent.session
            if live is not None:
                raise vss_error(409, "TaskAgentSessionConflictException",
                                f"A session for this runner already exists (owner {live.owner_name!r}).")
            fips = bool(hub.settings["fips_encryption"])
            session = Session(agent, owner, fips)
            agent.session = session
            hub.sessions[session.id] = session
            wrapped = wrap_session_key(agent.public_key, session.key, fips)
            base = self.host_base()
            return Response(200, {"sessionId": session.id, "ownerName": owner,
                                  "agent": {"id": agent.id, "name": agent.name, "version": agent.version,
                                            "osDescription": agent.os_description, "enabled": True,
                                            "status": "online", "provisioningState": "Provisioned",
                                            "ephemeral": agent.ephemeral},
                                  "useFipsEncryption": fips,
                                  "encryptionKey": {"encrypted": True, "value": base64.b64encode(wrapped).decode()},
                                  "brokerMigrationMessage": None, "_links": {"self": base}})

    def session_for(self, agent, sid):
        hub = self.hub
        s = hub.sessions.get(sid)
        if agent.deleted:
            raise vss_error(404, "TaskAgentNotFoundException", f"Agent {agent.id} was not found.")
        if s is None or s.dead:
            why = hub.dead_sessions.get(sid, "unknown")
            raise vss_error(hub.settings["session_expired_status"], "TaskAgentSessionExpiredException",
                            f"The session {sid} has expired ({why}).")
        if s.agent is not agent:
            raise vss_error(403, "AccessDeniedException", f"Session {sid} belongs to another runner.")
        return s

    def loc_messages(self):
        hub = self.hub
        agent = self.runner_agent()
        sid = self.query.get("sessionId")
        if not sid:
            raise bad_request("query parameter sessionId is missing")
        if self.command == "DELETE":
            mid = self.route_values.get("messageId")
            if mid is None:
                raise bad_request("DELETE messages needs a message id")
            with hub.lock:
                s = hub.sessions.get(sid)
                if s is not None and s.agent is agent:
                    for m in list(s.unacked):
                        if str(m.id) == mid:
                            s.unacked.remove(m)
                            if m.job and m.job.state == "assigned":
                                m.job.events.append({"time": iso(), "messageDeleted": m.id})
            return Response(204)
        if self.route_values.get("messageId") is not None:
            raise bad_request("GET messages takes no message id")
        status = self.query.get("status") or "Online"
        # TaskAgentStatus: Offline = 1, Online = 2, Busy = 3; by name in any case or by number
        status = {"1": "Offline", "2": "Online", "3": "Busy", "offline": "Offline", "online": "Online",
                  "busy": "Busy"}.get(status.lower())
        if status is None:
            raise bad_request(f"query parameter status {self.query.get('status')!r} is not Online or Busy")
        version = self.query.get("runnerVersion")
        with hub.cond:
            s = self.session_for(agent, sid)
            minv = hub.settings["min_runner_version"]
            if minv and version_tuple(version or agent.version) < version_tuple(minv):
                raise vss_error(403, "AccessDeniedException",
                                f"Runner version {version or agent.version} is deprecated and cannot receive "
                                f"messages; {minv} or later is required.", error_code=1)
            s.generation += 1
            gen = s.generation
            s.status = status
            if status == "Online" and agent.job is not None and agent.job.state == "running":
                agent.job.violate("polled with status=Online while running a job (§4.2, §7.1: Busy)")
            s.last_activity = time.time()
            s.polls += 1
            hub.cond.notify_all()
            deadline = time.time() + hub.settings["poll_hold"]
            try:
                while True:
                    if hub.stopping:
                        return Response(204)
                    s = self.session_for(agent, sid)
                    if s.generation != gen:
                        return Response(204)   # superseded by a newer poll on this session (§4.2)
                    msg, wake = self.next_message(s, status)
                    if msg is not None:
                        return self.deliver(s, msg)
                    now = time.time()
                    if now >= deadline:
                        return Response(204)
                    hub.cond.wait(min(deadline, wake) - now)
            finally:
                s.polls -= 1
                s.last_activity = time.time()

    def next_message(self, s, status):
        """The next message for a poll and the time to look again."""
        hub = self.hub
        now = time.time()
        for m in list(s.unacked):
            job = m.job
            if job is not None and status == "Busy" and job.renewals == 0 and job.state == "assigned":
                # A busy runner left a job it never started undeleted (a run-once runner does,
                # §7.1): it goes back to the queue for another runner, not round again to this one.
                s.unacked.remove(m)
                hub.requeue(job, "left undeleted by a busy runner")
                continue
            if job is not None and job.renewals > 0:
                job.violate("the job message was not deleted before the next poll (§4.5, §10.1)")
            return m, 0
        wake = now + 3600
        for m in s.outbox:
            if m.not_before <= now:
                s.outbox.remove(m)
                return m, 0
            wake = min(wake, m.not_before)
        agent = s.agent
        if status == "Online" and agent.job is None:
            for job in hub.queue:
                if job.state == "queued" and hub.job_matches(job, agent):
                    hub.queue.remove(job)
                    job.state = "assigned"
                    job.agent = agent
                    job.session_id = s.id
                    job.assignments += 1
                    job.delivered_at = now
                    job.times["delivered"] = now
                    job.locked_until = now + hub.settings["lock_seconds"]
                    agent.job = job
                    job.message["lockedUntil"] = iso(job.locked_until)
                    body = json.dumps(job.message)
                    return Message("PipelineAgentJobRequest", body, job=job), 0
        return None, wake

    def deliver(self, s, msg):
        hub = self.hub
        if msg.id is None:
            msg.id = hub.next_message_id
            hub.next_message_id += 1
        msg.deliveries += 1
        if msg not in s.unacked and not msg.duplicate:
            s.unacked.append(msg)
        if msg.job:
            msg.job.message_id = msg.id
        dup = hub.take_fault("messages", "GET", self.route_path, actions=("duplicate",))
        if dup:
            copy_msg = Message(msg.type, msg.body, job=None)
            copy_msg.id = msg.id
            copy_msg.duplicate = True
            s.outbox.insert(0, copy_msg)
        plaintext = (BOM if hub.settings["message_bom"] else b"") + msg.body.encode("utf-8")
        iv, ct = encrypt_message(s.key, plaintext)
        return Response(200, {"messageId": msg.id, "messageType": msg.type,
                              "iv": base64.b64encode(iv).decode(), "body": base64.b64encode(ct).decode()})

    # --- job requests (§7.2, §7.10) ----------------------------------------------------------

    def loc_jobrequests(self):
        hub = self.hub
        agent = self.runner_agent()
        rid = self.route_values.get("requestId")
        if rid is None or not rid.isdigit():
            raise bad_request("jobrequests needs a numeric request id")
        with hub.lock:
            job = hub.jobs.get(int(rid))
            if job is None or job.agent is not agent:
                raise vss_error(404, "TaskAgentJobNotFoundException", f"No job request {rid} for this runner.")
            if self.command == "GET":
                return Response(200, self.job_request_json(job))
            if self.command == "DELETE":
                raise vss_error(403, "AccessDeniedException", "a runner cannot delete a job request")
        lock_token = self.query.get("lockToken")
        if lock_token is None or not is_guid(lock_token):
            raise bad_request("query parameter lockToken (a GUID) is missing")
        body = self.json_body()
        body_rid = int_member(body, "requestId")
        if body_rid != int(rid):
            raise bad_request(f"body requestId {body_rid} does not match the route's {rid}")
        with hub.lock:
            if job.state == "completed" and job.completed_via in ("lock-expired", "runner-deleted"):
                raise vss_error(404, "TaskAgentJobNotFoundException", f"Job request {rid} was {job.result}.")
            if body.get("result") is not None or body.get("finishTime") is not None:
                result = enum_in(member(body, "result"), TASK_RESULTS, "result")
                finish = member(body, "finishTime", str)
                try:
                    parse_iso(finish)
                except ValueError as e:
                    raise bad_request(str(e))
                job.events.append({"time": iso(), "finish": result})
                if job.plan_version >= 8 and job.completed_via != "event":
                    job.violate("the listener finished a plan version >= 8 job by PATCH; the worker's JobCompleted "
                                "event completes it (§7.10)")
                hub.complete(job, result, "finish")
                return Response(200, self.job_request_json(job))
            job.renewals += 1
            job.mark("firstRenewal")
            if job.state == "assigned":
                job.state = "running"
            job.locked_until = time.time() + hub.settings["lock_seconds"]
            return Response(200, self.job_request_json(job))

    def job_request_json(self, job):
        return {"requestId": job.request_id, "queueTime": iso(), "assignTime": iso(job.delivered_at),
                "receiveTime": iso(job.delivered_at),
                "lockedUntil": iso(job.locked_until) if job.locked_until else None,
                "finishTime": job.finish_time, "result": job.result, "planType": job.hub_name,
                "planId": job.plan_id, "jobId": job.job_id, "scopeId": job.scope_id,
                "reservedAgent": {"id": job.agent.id, "name": job.agent.name} if job.agent else None,
                "poolId": job.agent.pool_id if job.agent else None, "definition": {"id": 0, "name": "fakehub"},
                "owner": {"id": 0, "name": "fakehub"}, "data": {}}

    def loc_packages(self):
        # the listener (self-update) with its token; the worker, at the end of a job with
        # disableUpdate, with the job token (§9.3). No newer packages: nothing to offer.
        self.bearer(("runner", "job"))
        return Response(200, {"count": 0, "value": []})

    # --- job-scoped endpoints (§7.4-7.10, §8.2): job token -----------------------------------

    def plan_job(self):
        """The job the route's plan belongs to; the job token must be that job's."""
        hub = self.hub
        tok = self.bearer(("job",), challenge=True)
        rv = self.route_values
        with hub.lock:
            job = hub.jobs.get(tok.subject)
            if job is None:
                raise vss_error(404, "TaskOrchestrationPlanNotFoundException", "no job for this token")
            if (rv.get("planId", "").lower() != job.plan_id.lower() or
                    rv.get("scopeIdentifier", "").lower() != job.scope_id.lower() or
                    rv.get("hubName", "").lower() != job.hub_name.lower()):
                raise vss_error(403, "TaskOrchestrationPlanSecurityException",
                                f"the job token is for plan {job.plan_id} (scope {job.scope_id}, hub {job.hub_name}),"
                                f" not {rv.get('planId')} ({rv.get('scopeIdentifier')}, {rv.get('hubName')})")
            if job.state == "completed" and job.completed_via in ("lock-expired", "runner-deleted", "canceled-in-queue"):
                raise vss_error(409, "TaskOrchestrationPlanTerminatedException", f"the plan was {job.result}")
            if job.renewals == 0 and job.state != "completed":
                job.violate("the worker called the job service before the first lock renewal succeeded (§7.1)")
            if job.state == "completed" and job.completed_via == "event" and self.route in ("records", "feed", "logs"):
                job.violate(f"{self.route} sent after JobCompleted (§7.10: uploads drain before the event)")
            job.mark("firstJobCall")
            return job

    def timeline_of(self, job):
        tid = self.route_values.get("timelineId")
        tl = self.hub.timelines.get(tid.lower() if tid else None)
        if tl is None or tl["job"] != job.request_id:
            raise vss_error(404, "TimelineNotFoundException", f"Timeline {tid} not found.")
        return tl

    def loc_timelines(self):
        hub = self.hub
        job = self.plan_job()
        with hub.lock:
            if self.command == "POST":
                body = self.json_body()
                tid = member(body, "id", str).lower()
                if tid in hub.timelines:
                    raise vss_error(409, "TimelineExistsException", f"Timeline {tid} already exists.")
                hub.timelines[tid] = {"id": tid, "changeId": 1, "job": job.request_id, "records": {}}
                return Response(200, {"id": tid, "changeId": 1, "location": None})
            tl = self.timeline_of(job)
            out = {"id": tl["id"], "changeId": tl["changeId"], "location": None}
            if str(self.query.get("includeRecords", "")).lower() == "true":
                out["records"] = list(tl["records"].values())
            return Response(200, out)

    RECORD_MEMBERS = ["id", "parentId", "type", "name", "startTime", "finishTime", "currentOperation",
                      "percentComplete", "state", "result", "resultCode", "changeId", "lastModified", "workerName",
                      "order", "refName", "log", "details", "errorCount", "warningCount", "noticeCount", "issues",
                      "variables", "location", "attempt", "identifier", "agentPlatform", "previousAttempts"]
    RECORD_CANON = {m.lower(): m for m in RECORD_MEMBERS}

    def loc_records(self):
        hub = self.hub
        job = self.plan_job()
        body = self.json_body()
        value = member(body, "value", list)
        count = body.get("count")
        if count is not None and count != len(value):
            raise bad_request(f"count {count} does not match {len(value)} records")
        with hub.lock:
            tl = self.timeline_of(job)
            updates = []
            for i, rec in enumerate(value):
                rid = member(rec, "id", str, where=f"value[{i}]")
                if not is_guid(rid):
                    raise bad_request(f"value[{i}].id {rid!r} is not a GUID")
                upd = {}
                for k, v in rec.items():
                    name = self.RECORD_CANON.get(k.lower(), k)
                    if v is None:
                        continue
                    if name == "state":
                        v = enum_in(v, RECORD_STATES, f"value[{i}].state")
                    elif name == "result":
                        v = enum_in(v, TASK_RESULTS, f"value[{i}].result")
                    elif name in ("startTime", "finishTime", "lastModified"):
                        try:
                            parse_iso(v)
                        except (ValueError, TypeError) as e:
                            raise bad_request(f"value[{i}].{name}: {e}")
                    elif name == "log":
                        lid = int_member(v, "id", where=f"value[{i}].log")
                        if lid not in hub.logs:
                            raise bad_request(f"value[{i}].log.id {lid} is not a log of this plan")
                    upd[name] = v
                updates.append((rid.lower(), upd))
            for rid, upd in updates:
                cur = tl["records"].setdefault(rid, {"id": rid})
                for k, v in upd.items():
                    if k == "variables" and isinstance(cur.get(k), dict):
                        cur[k].update(v)
                    else:
                        cur[k] = v
                cur.setdefault("history", []).append(dict(upd, _time=iso()))
                if rid == job.job_id.lower() and job.state == "assigned":
                    job.state = "running"
                if upd.get("state") == "inProgress" and rid != job.job_id.lower():
                    job.mark("firstStepStarted")
                if rid == job.job_id.lower() and upd.get("startTime"):
                    starts = job.times.setdefault("jobRecordStarts", [])
                    if upd["startTime"] not in starts:
                        starts.append(upd["startTime"])
                    if len(starts) > 1:
                        job.violate("the job record was started twice (two startTime values): the job ran twice?")
            tl["changeId"] += 1
            out = [{k: v for k, v in tl["records"][rid].items() if k != "history"} for rid, _ in updates]
            return Response(200, {"count": len(out), "value": out})

    def loc_feed(self):
        hub = self.hub
        job = self.plan_job()
        body = self.json_body()
        value = member(body, "value", list)
        step = body.get("stepId") or self.route_values.get("recordId")
        if not is_guid(step):
            raise bad_request(f"stepId {step!r} is not a GUID")
        lines = []
        for v in value:
            if not isinstance(v, str):
                raise bad_request("feed value must be a list of strings")
            lines.extend(re.split(r"\r?\n", v))
        with hub.lock:
            self.timeline_of(job)
            hub.feeds[job.request_id].setdefault(step.lower(), []).extend(lines)
            batches = hub.feeds[job.request_id].setdefault("_batches", [])
            batches.append({"stepId": step.lower(), "route": self.route_values.get("recordId"),
                            "startLine": body.get("startLine"), "count": len(value)})
        return Response(204)

    def loc_logs(self):
        hub = self.hub
        job = self.plan_job()
        lid = self.route_values.get("logId")
        base = self.host_base()
        if lid is None:
            body = self.json_body()
            path = member(body, "path", str)
            with hub.lock:
                new = hub.next_log_id
                hub.next_log_id += 1
                now = iso()
                hub.logs[new] = {"id": new, "path": path, "job": job.request_id, "data": b"", "appends": 0,
                                 "createdOn": now, "lastChangedOn": now}
                return Response(200, self.log_json(hub.logs[new], base))
        data = self.octet_body()
        if data.startswith(BOM):
            data = data[3:]
        with hub.lock:
            log = hub.logs.get(int(lid)) if lid.isdigit() else None
            if log is None or log["job"] != job.request_id:
                raise vss_error(404, "TaskLogNotFoundException", f"Log {lid} not found.")
            log["data"] += data
            log["appends"] += 1
            log["lastChangedOn"] = iso()
            return Response(200, self.log_json(log, base))

    def log_json(self, log, base):
        job = self.hub.jobs[log["job"]]
        text = log["data"].decode("utf-8", "replace")
        return {"id": log["id"], "path": log["path"],
                "location": f"{base}/t/{self.hub.tenant}/{job.scope_id}/_apis/distributedtask/hubs/{job.hub_name}"
                            f"/plans/{job.plan_id}/logs/{log['id']}",
                "createdOn": log["createdOn"], "lastChangedOn": log["lastChangedOn"],
                "lineCount": len(text.splitlines()), "indexLocation": None}

    def loc_attachments(self):
        hub = self.hub
        job = self.plan_job()
        data = self.octet_body()
        rv = self.route_values
        with hub.lock:
            tl = self.timeline_of(job)
            rec = rv["recordId"].lower()
            hub.attachments[(job.request_id, rec, rv["type"], rv["name"])] = data
            now = iso()
        return Response(200, {"type": rv["type"], "name": rv["name"], "timelineId": tl["id"], "recordId": rec,
                              "createdOn": now, "lastChangedOn": now, "lastChangedBy": EMPTY_GUID, "_links": {}})

    def loc_events(self):
        hub = self.hub
        job = self.plan_job()
        body = self.json_body()
        name = body.get("name")
        if name is None and body.get("result") is None:
            raise bad_request("event has neither 'name' nor 'result'")
        if name is not None and name not in ("JobCompleted", "JobAssigned", "JobStarted"):
            raise bad_request(f"unknown event name {name!r} (names are case-sensitive: JobCompleted)")
        job_id = member(body, "jobId", str)
        rid = int_member(body, "requestId")
        with hub.lock:
            if job_id.lower() != job.job_id.lower() or rid != job.request_id:
                raise vss_error(404, "TaskOrchestrationJobNotFoundException",
                                f"job {job_id} / request {rid} is not in plan {job.plan_id}")
            job.events.append({"time": iso(), "event": name or "JobCompleted", "body": json.loads(self.body)})
            if name in (None, "JobCompleted") and job.state == "completed" and job.completed_via == "event":
                first = next(e for e in job.events if e.get("event") == "JobCompleted")
                if first["body"] != job.events[-1]["body"]:
                    job.violate("a second, different JobCompleted for the same job: the job ran twice?")
            if name in (None, "JobCompleted"):
                if job.plan_version < 8:
                    job.violate("JobCompleted event for plan version < 8 (§7.10: the listener finishes by PATCH)")
                result = enum_in(member(body, "result"), TASK_RESULTS, "result")
                outputs = {}
                for k, v in (body.get("outputs") or {}).items():
                    outputs[k] = v.get("value") if isinstance(v, dict) else v
                env = body.get("actionsEnvironment")
                if env is not None:
                    job.environment = env
                if job.state != "completed":
                    hub.complete(job, result, "event", outputs)
        return Response(204)

    def loc_actiondownloadinfo(self):
        hub = self.hub
        job = self.plan_job()
        body = self.json_body()
        wanted = member(body, "actions", list)
        base = self.host_base()
        out = {}
        missing = []
        with hub.lock:
            for i, a in enumerate(wanted):
                nwo = member(a, "nameWithOwner", str, where=f"actions[{i}]")
                ref = member(a, "ref", str, where=f"actions[{i}]")
                info = hub.actions.get((nwo.lower(), ref))
                if info is None:
                    missing.append(f"{nwo}@{ref}")
                    continue
                owner, repo = info["name"].split("/", 1)
                token = hub.issue_opaque("action", "ghs_" + secrets.token_hex(18), 3600, job.request_id)
                url = f"{base}/_actions/tarball/{owner}/{repo}/{info['sha']}"
                out[f"{nwo}@{ref}"] = {"nameWithOwner": nwo, "resolvedNameWithOwner": info["name"], "ref": ref,
                                       "resolvedSha": info["sha"], "tarballUrl": url,
                                       "zipballUrl": url.replace("/tarball/", "/zipball/"),
                                       "authentication": {"token": token, "expiresAt": iso(time.time() + 3600)},
                                       "packageDetails": None}
        if missing:
            raise vss_error(422, "UnresolvableActionDownloadInfoException",
                            "Unable to resolve action " + ", ".join(missing) + ", unable to find version.")
        return Response(200, {"actions": out})

    def tarball(self):
        hub = self.hub
        m = re.fullmatch(r"/_actions/tarball/([^/]+)/([^/]+)/([0-9a-f]{40})", self.route_path)
        if not m or self.command != "GET":
            raise HttpError(404, "Not Found")
        auth = self.headers.get("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "basic":
            raise HttpError(401, "tarball download needs Basic x-access-token:<token>",
                            {"message": "Requires authentication"})
        try:
            user, _, token = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise HttpError(401, "malformed Basic credentials", {"message": "Bad credentials"})
        with hub.lock:
            tok = hub.tokens.get(token)
            if user != "x-access-token" or tok is None or tok.kind not in ("action", "github") or \
                    not tok.valid(time.time()):
                raise HttpError(403, f"tarball credentials refused (user {user!r})", {"message": "Bad credentials"})
            data = hub.tarballs.get((m.group(1).lower(), m.group(2).lower(), m.group(3)))
        if data is None:
            raise HttpError(404, "no such action tarball", {"message": "Not Found"})
        return Response(200, data, "application/x-gzip",
                        {"Content-Disposition": f"attachment; filename={m.group(1)}-{m.group(2)}-{m.group(3)[:7]}.tar.gz"})

    def oidc_token(self):
        """§7.11: GET <GenerateIdTokenUrl>&audience=<aud>, Bearer <job token> → {"value": <JWT>}.
        Only a job queued with id_token=True has this URL (GitHub: `id-token: write`)."""
        hub = self.hub
        if self.command != "GET":
            raise HttpError(405, "the id token endpoint takes GET")
        tok = self.bearer(("job",), challenge=False)
        with hub.lock:
            job = hub.jobs.get(int(tok.subject)) if str(tok.subject).isdigit() else None
            if job is None or not job.id_token:
                raise HttpError(403, "this job may not ask for an id token")
            audience = self.query.get("audience") or hub.url
            value = hub.issue_jwt("oidc", job.request_id, 300,
                                  {"aud": audience, "repository": "octo-org/octo-repo", "job_workflow_ref":
                                   "octo-org/octo-repo/.github/workflows/ci.yml@refs/heads/main"})
        return Response(200, {"value": value})

    # --- results service (§7.9): twirp, snake_case, job token; blobs on ourselves -----------

    TWIRP = "twirp/results.services.receiver.Receiver/"
    STEPS = "twirp/github.actions.results.api.v1.WorkflowStepUpdateService/WorkflowStepsUpdate"

    def results_twirp(self):
        hub = self.hub
        rel = self.route_path[len("/results/"):]
        if self.command != "POST":
            raise HttpError(405, "results calls are POST")
        tok = self.bearer(("job",), challenge=False)
        body = self.json_body()
        with hub.lock:
            job = hub.jobs.get(tok.subject)
            store = hub.results.get(tok.subject)
            if job is None or store is None:
                raise HttpError(404, "no job for this token", {"code": "not_found", "msg": "job not found"})
        run_id = member(body, "workflow_run_backend_id", str)
        job_id = member(body, "workflow_job_run_backend_id", str)
        if run_id.lower() != job.plan_id or job_id.lower() != job.job_id:
            raise HttpError(400, f"backend ids {run_id}/{job_id} are not this job's {job.plan_id}/{job.job_id}",
                            {"code": "invalid_argument", "msg": "wrong workflow_run/job backend id"})
        base = self.host_base()

        def blob(kind, step=None):
            with hub.lock:
                bid = secrets.token_hex(8)
                hub.blobs[bid] = {"job": job.request_id, "kind": kind, "step": step, "data": b"", "sealed": False,
                                  "sig": secrets.token_hex(8), "puts": 0}
                return f"{base}/results/_blob/{bid}?sig={hub.blobs[bid]['sig']}"
        if rel == self.STEPS:
            steps = member(body, "steps", list)
            order = int_member(body, "change_order")
            with hub.lock:
                store["updates"].append({"change_order": order, "steps": json.loads(self.body)["steps"]})
                for i, st in enumerate(steps):
                    ext = member(st, "external_id", str, where=f"steps[{i}]")
                    cur = store["steps"].setdefault(ext.lower(), {})
                    for k, v in st.items():
                        if v is not None:
                            cur[k.lower()] = v
            return Response(200, {"ok": True})
        if not rel.startswith(self.TWIRP):
            raise HttpError(404, f"no twirp method {rel}", {"code": "bad_route", "msg": rel})
        method = rel[len(self.TWIRP):]
        kinds = {"GetStepLogsSignedBlobURL": ("step-log", "logs_url", True),
                 "GetJobLogsSignedBlobURL": ("job-log", "logs_url", False),
                 "GetStepSummarySignedBlobURL": ("summary", "summary_url", True),
                 "GetJobDiagLogsSignedBlobURL": ("diag", "diag_logs_url", False)}
        if method in kinds:
            kind, key, per_step = kinds[method]
            step = member(body, "step_backend_id", str) if per_step else None
            out = {key: blob(kind, step.lower() if step else None), "blob_storage_type": "BLOB_STORAGE_TYPE_UNSPECIFIED"}
            if kind in ("step-log", "summary"):
                out["soft_size_limit"] = "1048576"
            return Response(200, out)
        if method in ("CreateStepLogsMetadata", "CreateJobLogsMetadata", "CreateStepSummaryMetadata"):
            if method != "CreateJobLogsMetadata":
                member(body, "step_backend_id", str)
            member(body, "uploaded_at", str)
            with hub.lock:
                store["metadata"].append(dict(json.loads(self.body), method=method))
            return Response(200, {"ok": True})
        raise HttpError(404, f"no twirp method {method}", {"code": "bad_route", "msg": method})

    def results_blob(self):
        hub = self.hub
        bid = self.route_path[len("/results/_blob/"):]
        if self.command != "PUT":
            raise HttpError(405, "blobs take PUT")
        with hub.lock:
            blob = hub.blobs.get(bid)
            if blob is None or self.query.get("sig") != blob["sig"]:
                raise HttpError(403, "blob signature refused", "AuthenticationFailed", content_type="text/plain")
            if blob["sealed"]:
                raise HttpError(409, "blob is sealed", "BlobIsSealed", content_type="text/plain")
            data = self.body[3:] if self.body.startswith(BOM) else self.body
            comp = self.query.get("comp")
            if comp == "appendblock":
                blob["data"] += data
                sealed = (self.query.get("seal") or "").lower() == "true" or \
                    (self.headers.get("x-ms-blob-sealed") or "").lower() == "true"
                blob["sealed"] = blob["sealed"] or sealed
            elif comp is None:
                blob["data"] = data
            else:
                raise HttpError(400, f"unknown comp={comp}", "InvalidQueryParameterValue", content_type="text/plain")
            blob["puts"] += 1
            store = hub.results[blob["job"]]["blobs"]
            store[f"{blob['kind']}:{blob['step'] or ''}"] = blob["data"].decode("utf-8", "replace")
        return Response(201, b"", "text/plain")

    # --- admin API ---------------------------------------------------------------------------

    def admin_api(self):
        hub = self.hub
        p = self.route_path[len("/_admin"):].rstrip("/")
        body = loads_ci(self.body) if self.body else CIDict()
        cmd = self.command
        if p == "/health":
            return Response(200, {"ok": True, "url": hub.url})
        if p == "/registration-token" and cmd == "POST":
            kind = body.get("kind", "registration")
            if kind not in ("registration", "remove"):
                raise HttpError(400, "kind is registration or remove")
            with hub.lock:
                lifetime = float(body.get("expires_in", 3600))
                tok = hub.issue_opaque(kind, lifetime=lifetime)
            return Response(200, {"token": tok, "expires_at": iso(time.time() + lifetime)})
        if p == "/settings":
            if cmd == "POST":
                with hub.lock:
                    for k, v in body.items():
                        try:
                            hub.settings.set(k, v)
                        except KeyError as e:
                            raise HttpError(400, str(e))
                    hub.cond.notify_all()
            return Response(200, dict(hub.settings, pat=hub.pat, registration_token=hub.registration_token,
                                      routes=hub.router.layout, tenant_url=hub.tenant_url))
        if p == "/requests":
            since = int(self.query.get("since") or 0)
            route = self.query.get("route")
            with hub.lock:
                out = [r for r in hub.requests[since:] if route is None or r["route"] == route]
            return Response(200, out)
        if p == "/search":
            text = self.query.get("text") or ""
            if not text:
                raise HttpError(400, "search needs ?text=")
            with hub.lock:
                hits = [r["seq"] for r in hub.requests if text in json.dumps(r) or text in str(r.get("body"))]
            return Response(200, hits)
        if p == "/violations":
            with hub.lock:
                return Response(200, {str(j.request_id): j.violations for j in hub.jobs.values() if j.violations})
        m = re.fullmatch(r"/agents/([^/]+)/wait", p)
        if m:
            deadline = time.time() + float(self.query.get("timeout") or 30)
            with hub.cond:
                while time.time() < deadline:
                    agent = next((a for a in hub.agents.values() if m.group(1) in (str(a.id), a.name)), None)
                    if agent is not None and agent.session is not None and agent.session.polls > 0:
                        return Response(200, {"id": agent.id, "name": agent.name, "session": agent.session.id})
                    hub.cond.wait(max(0.0, min(0.2, deadline - time.time())))
            raise HttpError(408, f"no runner {m.group(1)} polling within the timeout")
        if p == "/refusals":
            with hub.lock:
                out = [r for r in hub.requests if r.get("refused")]
            return Response(200, out)
        if p == "/faults":
            if cmd == "POST":
                try:
                    return Response(200, hub.add_fault(dict(body)))
                except (ValueError, re.error) as e:
                    raise HttpError(400, str(e))
            if cmd == "DELETE":
                with hub.lock:
                    hub.faults.clear()
                return Response(204)
            with hub.lock:
                return Response(200, [f.to_json() for f in hub.faults])
        if p == "/actions" and cmd == "POST":
            return Response(200, hub.add_action(body["name"], body["ref"], dict(body["files"]), body.get("sha")))
        if p == "/agents":
            with hub.lock:
                return Response(200, [dict(a.to_json(hub.settings, hub.url), poolId=a.pool_id,
                                           session=a.session.id if a.session else None,
                                           sessionStatus=a.session.status if a.session else None,
                                           job=a.job.request_id if a.job else None)
                                      for a in hub.agents.values()])
        m = re.fullmatch(r"/agents/([^/]+)", p)
        if m and cmd == "DELETE":
            with hub.lock:
                agent = next((a for a in hub.agents.values() if m.group(1) in (str(a.id), a.name)), None)
                if agent is None:
                    raise HttpError(404, "no such agent")
                hub.delete_agent(agent)
            return Response(204)
        if p == "/messages" and cmd == "POST":
            with hub.lock:
                agent = next((a for a in hub.agents.values() if str(body.get("agent")) in (str(a.id), a.name)), None)
                if agent is None or agent.session is None:
                    raise HttpError(409, "no such agent, or it has no session")
                payload = body.get("body", {})
                text = payload if isinstance(payload, str) else json.dumps(payload)
                agent.session.outbox.append(Message(body["messageType"], text,
                                                    not_before=time.time() + float(body.get("delay", 0))))
                hub.cond.notify_all()
            return Response(204)
        if p == "/expire" and cmd == "POST":
            what = body.get("what", "runner-tokens")
            agent_ref = body.get("agent")
            with hub.lock:
                n = 0
                for tok in hub.tokens.values():
                    kind = {"runner-tokens": "runner", "job-tokens": "job", "admin-tokens": "admin",
                            "registration-tokens": "registration"}.get(what)
                    if tok.kind == kind and (agent_ref is None or
                                             str(tok.subject) == str(agent_ref) or
                                             any(str(a.id) == str(tok.subject) and a.name == agent_ref
                                                 for a in hub.agents.values())):
                        tok.revoked = True
                        n += 1
                if what == "sessions":
                    for s in list(hub.sessions.values()):
                        if agent_ref is None or str(agent_ref) in (str(s.agent.id), s.agent.name):
                            hub.end_session(s, "expired")
                            n += 1
                if what == "locks":
                    for job in hub.jobs.values():
                        if job.state in ("assigned", "running"):
                            job.locked_until = time.time() - 1
                            n += 1
                hub.cond.notify_all()
            return Response(200, {"expired": n})
        if p == "/workflows":
            if cmd == "POST":
                try:
                    out = hub.queue_workflow(dict(body), base=self.host_base())
                except ValueError as e:
                    raise HttpError(400, str(e))
                if out["state"] == "error":
                    raise HttpError(400, out["error"], dict(out, message=out["error"]))
                return Response(200, out)
            with hub.lock:
                return Response(200, [r.summary() for r in hub.workflow_runs.values()])
        m = re.fullmatch(r"/workflows/(\d+)(/wait)?", p)
        if m:
            with hub.cond:
                run = hub.workflow_runs.get(int(m.group(1)))
                if run is None:
                    raise HttpError(404, f"no workflow run {m.group(1)}")
                deadline = time.time() + float(self.query.get("timeout") or 60)
                while m.group(2) and run.state in ("planning", "running") and time.time() < deadline:
                    hub.cond.wait(max(0.0, min(0.5, deadline - time.time())))
                return Response(200, run.summary())
        if p == "/jobs":
            if cmd == "POST":
                msg = body.get("message")
                if not isinstance(msg, dict):
                    raise HttpError(400, "POST /_admin/jobs needs {'message': <job message>}")
                return Response(200, hub.queue_job(
                    msg, runs_on=body.get("runs_on"), agent=body.get("agent"), plan_version=body.get("plan_version"),
                    timeout_minutes=body.get("timeout_minutes"), keep_endpoints=bool(body.get("keep_endpoints")),
                    id_token=bool(body.get("id_token")),
                    base=self.host_base(), results=bool(body.get("results"))))
            with hub.lock:
                return Response(200, [j.summary() for j in hub.jobs.values()])
        m = re.fullmatch(r"/jobs/(\d+)(?:/(\w+))?", p)
        if m:
            return self.admin_job(int(m.group(1)), m.group(2), body)
        raise HttpError(404, f"no admin route {cmd} {p}")

    def admin_job(self, rid, what, body):
        hub = self.hub
        with hub.cond:
            job = hub.jobs.get(rid)
            if job is None:
                raise HttpError(404, f"no job {rid}")
            if what is None:
                return Response(200, job.summary())
            if what == "wait":
                deadline = time.time() + float(self.query.get("timeout") or 60)
                state = self.query.get("state") or "completed"
                order = ["queued", "assigned", "running", "completed"]
                while order.index(job.state) < order.index(state) and time.time() < deadline:
                    hub.cond.wait(deadline - time.time())
                return Response(200, job.summary())
            if what == "message":
                return Response(200, job.message)
            if what == "cancel" and self.command == "POST":
                hub.cancel_job(job, body.get("timeout", "00:05:00"))
                return Response(200, job.summary())
            if what == "timeline":
                tl = hub.timelines[job.timeline_id]
                recs = [r for t in hub.timelines.values() if t["job"] == rid for r in t["records"].values()]
                return Response(200, {"id": tl["id"], "records": recs})
            if what == "logs":
                out = {}
                for lid, log in hub.logs.items():
                    if log["job"] == rid:
                        out[str(lid)] = {"path": log["path"], "appends": log["appends"],
                                         "text": log["data"].decode("utf-8", "replace")}
                by_record = {}
                for t in hub.timelines.values():
                    if t["job"] == rid:
                        for rec in t["records"].values():
                            lg = rec.get("log")
                            if isinstance(lg, dict) and str(lg.get("id")) in out:
                                by_record[rec["id"]] = out[str(lg.get("id"))]["text"]
                return Response(200, {"logs": out, "records": by_record})
            if what == "feed":
                return Response(200, {k: v for k, v in hub.feeds.get(rid, {}).items()})
            if what == "summaries":
                out = {}
                for (jrid, rec, typ, name), data in hub.attachments.items():
                    if jrid == rid and typ == "Checks.Step.Summary":
                        out[name] = data.decode("utf-8", "replace")
                return Response(200, out)
            if what == "attachments":
                return Response(200, [{"recordId": rec, "type": typ, "name": name, "size": len(data)}
                                      for (jrid, rec, typ, name), data in hub.attachments.items() if jrid == rid])
            if what == "events":
                return Response(200, job.events)
            if what == "results":
                store = hub.results[rid]
                return Response(200, {"steps": store["steps"], "updates": store["updates"],
                                      "metadata": store["metadata"], "blobs": store["blobs"]})
        raise HttpError(404, f"no admin job route {what}")


def hub_create_agent(hub, base, pool_id, body, key):
    agent = Agent(hub.next_agent_id, pool_id, body, key, new_guid(), f"{base}/t/{hub.tenant}/_apis/oauth2/token")
    hub.next_agent_id += 1
    hub.agents[agent.id] = agent
    return agent


# ---------------------------------------------------------------------------------------------
# Helpers for tests.


def script_step(script, name="__run", display=None, condition="success()", step_id=None):
    """A `run:` step (§6.7)."""
    step = {"type": "action", "id": step_id or new_guid(), "name": name, "contextName": name,
            "condition": condition, "reference": {"type": "script"},
            "inputs": {"type": 2, "map": [{"key": "script", "value": script}]}}
    if display:
        step["displayNameToken"] = display
    return step


def minimal_job_message(steps=None, job_name="build", outputs=None):
    """A job message as §6.8 shows it, without what fakehub fills in when it queues it."""
    msg = {"jobName": job_name, "jobDisplayName": job_name,
           "variables": {"system.github.job": {"value": job_name}},
           "contextData": {"matrix": None, "strategy": {"t": 2, "d": [{"k": "job-index", "v": 0},
                                                                       {"k": "job-total", "v": 1}]}},
           "mask": [], "fileTable": [".github/workflows/ci.yml"],
           "steps": steps if steps is not None else [script_step("echo hello")],
           "workspace": {}}
    if outputs:
        msg["jobOutputs"] = {"type": 2, "map": [{"key": k, "value": {"type": 3, "expr": v}}
                                                for k, v in outputs.items()]}
    return msg


class FakeHubClient:
    """The admin API over HTTP, for a fakehub in this process or another one."""

    def __init__(self, url):
        self.url = url.rstrip("/")

    def call(self, method, path, body=None, timeout=120):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + "/_admin" + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"fakehub admin {method} {path}: {e.code} {e.read().decode(errors='replace')}")
        return json.loads(raw) if raw else None

    def registration_token(self, kind="registration", expires_in=3600):
        return self.call("POST", "/registration-token", {"kind": kind, "expires_in": expires_in})["token"]

    def settings(self, **kw):
        return self.call("POST", "/settings", kw) if kw else self.call("GET", "/settings")

    def queue_job(self, message, **kw):
        return self.call("POST", "/jobs", dict(kw, message=message))

    def queue_workflow(self, planner, workflow, **kw):
        """Queues a workflow's jobs in `needs` order, each planned by `planner` (a command line,
        e.g. [harrier, "exec"]) when the jobs it needs have ended; returns the run's summary."""
        return self.call("POST", "/workflows", dict(kw, planner=planner, workflow=workflow))

    def workflow(self, wid):
        return self.call("GET", f"/workflows/{wid}")

    def wait_workflow(self, wid, timeout=120):
        """Blocks until the workflow run completed (or failed to plan); returns its summary."""
        return self.call("GET", f"/workflows/{wid}/wait?timeout={timeout}", timeout=timeout + 10)

    def job(self, rid, what=None):
        return self.call("GET", f"/jobs/{rid}" + (f"/{what}" if what else ""))

    def wait_job(self, rid, timeout=60, state="completed"):
        return self.call("GET", f"/jobs/{rid}/wait?timeout={timeout}&state={state}", timeout=timeout + 10)

    def cancel_job(self, rid, timeout="00:05:00"):
        return self.call("POST", f"/jobs/{rid}/cancel", {"timeout": timeout})

    def requests(self, since=0, route=None):
        q = f"?since={since}" + (f"&route={route}" if route else "")
        return self.call("GET", "/requests" + q)

    def refusals(self):
        return self.call("GET", "/refusals")

    def fault(self, **spec):
        return self.call("POST", "/faults", spec)

    def clear_faults(self):
        return self.call("DELETE", "/faults")

    def agents(self):
        return self.call("GET", "/agents")

    def delete_agent(self, ref):
        return self.call("DELETE", f"/agents/{ref}")

    def send_message(self, agent, message_type, body, delay=0):
        return self.call("POST", "/messages", {"agent": agent, "messageType": message_type, "body": body,
                                               "delay": delay})

    def search(self, text):
        return self.call("GET", "/search?" + urllib.parse.urlencode({"text": text}))

    def violations(self):
        return self.call("GET", "/violations")

    def wait_polling(self, agent, timeout=30):
        """Blocks until the runner named `agent` holds a session and a poll is pending."""
        return self.call("GET", f"/agents/{agent}/wait?timeout={timeout}", timeout=timeout + 10)

    def expire(self, what, agent=None):
        return self.call("POST", "/expire", {"what": what, "agent": agent})

    def add_action(self, name, ref, files, sha=None):
        return self.call("POST", "/actions", {"name": name, "ref": ref, "files": files, "sha": sha})


class FakeHubProcess:
    """fakehub as a child process (sys.executable), for tests that want it out of their own
    process: `with FakeHubProcess(state_dir, "--set", "poll_hold=2") as hub: hub.url, hub.admin`."""

    def __init__(self, state_dir, *args):
        self.state_dir = state_dir
        self.args = list(args)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--port", "0", "--state-dir",
                                      str(self.state_dir), *self.args], stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise RuntimeError(f"fakehub did not start (exit {self.proc.returncode})")
        self.admin = FakeHubClient(self.url)
        with open(os.path.join(self.state_dir, "registration-token")) as f:
            self.registration_token = f.read().strip()
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None):
    ap = argparse.ArgumentParser(description="fakehub: a fake GitHub Actions service for harrier's tests")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--state-dir", help="writes url, registration-token, pat and requests.jsonl here")
    ap.add_argument("--routes", choices=["real", "rs"], default="real",
                    help="route templates advertised by connectionData (PROTOCOL.md §1.4 columns)")
    ap.add_argument("--registration-token", help="a registration token to accept (default: a random one)")
    ap.add_argument("--pat", help="the PAT the /api/v3 token helpers accept (default: random)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="a setting, e.g. --set poll_hold=5 (see Settings.DEFAULTS)")
    args = ap.parse_args(argv)
    settings = {}
    for item in args.set:
        k, _, v = item.partition("=")
        settings[k] = json.loads(v)
    hub = FakeHub(args.host, args.port, args.state_dir, args.routes, registration_token=args.registration_token,
                  pat=args.pat, **settings)
    hub.start()
    print(hub.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()


if __name__ == "__main__":
    sys.exit(main())

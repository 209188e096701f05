"""ZooKeeper probes: anonymous read and write over TLS, and plaintext with valid SASL, each
in ZooKeeper's own shell (``zookeeper_verdict`` judges what the shell printed); and the
four-letter words it answers to any holder of an environment certificate."""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor

from ..build.render import ZOOKEEPER_SASL_USER
from ..errors import SecureKafkaError
from ..model.topology import ZK_SECURE_CLIENT_PORT
from ..pki.secretstore import ZOOKEEPER_SASL, store_password_name
from . import probes
from .scorecard import ProbeResult, _where, result
from .target import Target

ZK_PLAINTEXT_PORT = 2181  # ZooKeeper's customary plaintext client port: must be closed
ZNODE_LIST = re.compile(r"^\[\d+(, \d+)*\]$", re.MULTILINE)
SASL_REFUSED = "client failed to authenticate"
# What ZooKeeper's shell prints when the server refuses each probe.
ZOOKEEPER_REFUSALS = {"zookeeper.anonymous-read": SASL_REFUSED, "zookeeper.anonymous-write": SASL_REFUSED,
                      "zookeeper.plaintext": "ConnectionLoss"}


def zookeeper_verdict(probe: str, output: str, intruder: str) -> str:
    """``answered`` (data listed, or the intruder's znode created), ``refused`` (the refusal's
    own words and nothing answered), or ``inconclusive`` (neither: the shell proved nothing)."""
    if ZNODE_LIST.search(output) or f"Created {intruder}" in output:
        return "answered"
    return "refused" if ZOOKEEPER_REFUSALS[probe] in output else "inconclusive"


def probe_zookeeper(t: Target) -> list[ProbeResult]:
    """ZooKeeper's shell in one-off containers on the environment's network, with a broker's
    TLS certificate (which ZooKeeper accepts), so a refusal is about SASL alone."""
    broker, zk = t.topology.brokers[0], t.topology.zookeepers[0]
    image = (t.inspected.get(zk.name) or {}).get("Config", {}).get("Image")
    if not image:
        raise SecureKafkaError(f"{zk.container} is not running")
    intruder = f"/secure-kafka-verify-{uuid.uuid4().hex[:8]}"
    server = f"{zk.name}:{ZK_SECURE_CLIENT_PORT}"
    runs = {
        "zookeeper.anonymous-read": dict(command=("ls", "/brokers/ids"), server=server),
        "zookeeper.anonymous-write": dict(command=("create", intruder, "x"), server=server),
        "zookeeper.plaintext": dict(command=("ls", "/brokers/ids"), server=f"{zk.name}:{ZK_PLAINTEXT_PORT},{server}",
                                    tls=False, sasl_password=t.env.secrets.get(ZOOKEEPER_SASL)),
    }

    tls = t.settings.tls
    tls_properties = {"zookeeper.ssl.protocol": tls.protocol, "zookeeper.ssl.enabledProtocols": tls.enabled_protocols,
                      "zookeeper.ssl.ciphersuites": tls.cipher_suites}

    def shell(probe: str, attempt: int = 0) -> str:
        spec = dict(runs[probe])
        work_dir = t.work_dir / f"{probe}-{attempt}"
        work_dir.mkdir(mode=0o700)
        return probes.zookeeper_shell(image, t.topology.network, spec.pop("server"), t.env.certs.node_dir(broker.name),
                                      t.env.secrets.get(store_password_name(broker.name)), work_dir,
                                      *spec.pop("command"), sasl_user=ZOOKEEPER_SASL_USER,
                                      tls_properties=tls_properties, **spec)

    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        outputs = dict(zip(runs, pool.map(shell, runs)))
    # A shell that ended without either answer (seen once on a loaded prod start: the JVM exited
    # 1 before printing the server's refusal) proves nothing either way: asked again, one at a
    # time, twice at most. An answer is never asked again: it fails the probe at once.
    for probe in runs:
        for attempt in (1, 2):
            if zookeeper_verdict(probe, outputs[probe], intruder) != "inconclusive":
                break
            outputs[probe] = shell(probe, attempt)
    results = []
    for probe in runs:
        out, outcome = outputs[probe], zookeeper_verdict(probe, outputs[probe], intruder)
        refusal = ZOOKEEPER_REFUSALS[probe]
        observed = {"answered": "answered", "refused": f"refused: {refusal}"}.get(outcome, f"unexpected: {_last_line(out)}")
        results.append(result(probe, f"refused: {refusal}", observed, outcome == "refused"))
    return results


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:120] if lines else "no output"


# Words that tell an unauthenticated caller the server's configuration (conf, envi), its
# clients and sessions (cons, dump, wchc), its state (stat, mntr, ruok) or reset counters
# (crst, srst). `srvr` cannot be switched off (ZooKeeper adds it to any whitelist): the control.
REFUSED_WORDS = ("ruok", "stat", "conf", "cons", "crst", "dump", "envi", "mntr", "srst", "wchc", "wchs", "dirs", "isro")
NOT_WHITELISTED = "is not executed because it is not in the whitelist"


def four_letter_verdict(word: str, answer: str | None) -> str:
    """``refused`` (ZooKeeper's own refusal), ``answered``, or ``silent`` (nothing proves either)."""
    if answer is None:
        return "silent"
    return "refused" if NOT_WHITELISTED in answer else "answered"


def probe_four_letter_words(t: Target) -> list[ProbeResult]:
    """Asked as a broker (the only kind of client ZooKeeper's port accepts besides its peers)."""
    answered, silent, control = [], [], []
    broker_cert = t.node_cert(t.topology.brokers[0])
    for zk in t.topology.zookeepers:
        if not (ip := t.ip(zk)):
            silent.append(f"{zk.name} (not running)")
            continue
        if four_letter_verdict("srvr", probes.zookeeper_four_letter_word(ip, ZK_SECURE_CLIENT_PORT, "srvr",
                                                                         broker_cert)) != "answered":
            control.append(zk.name)
        for word in REFUSED_WORDS:
            verdict = four_letter_verdict(word, probes.zookeeper_four_letter_word(ip, ZK_SECURE_CLIENT_PORT, word,
                                                                                 broker_cert))
            if verdict == "answered":
                answered.append(f"{zk.name}: {word}")
            elif verdict == "silent":
                silent.append(f"{zk.name}: {word}")
    observed = "; ".join(filter(None, [f"answered {_where(answered)}" if answered else "",
                                       f"no answer to {_where(silent)}" if silent else "",
                                       f"srvr unanswered on {_where(control)}" if control else ""]))
    return [result("zookeeper.four-letter-words", f"srvr only; {', '.join(REFUSED_WORDS)} refused",
                   observed or f"{len(t.topology.zookeepers)} nodes refused {len(REFUSED_WORDS)} words each",
                   not answered and not silent and not control and bool(t.topology.zookeepers))]


def probe_node_certificates_only(t: Target) -> list[ProbeResult]:
    """ZooKeeper's TLS port refuses the admin's certificate (a valid one of the environment, not a
    node's) in the handshake; the control: a broker's certificate gets ``srvr`` answered."""
    broker_cert = t.node_cert(t.topology.brokers[0])
    accepted, unanswered = [], []
    for zk in t.topology.zookeepers:
        ip = t.ip(zk)
        if not ip or probes.zookeeper_four_letter_word(ip, ZK_SECURE_CLIENT_PORT, "srvr", broker_cert) is None:
            unanswered.append(zk.name)  # the control failed: a refusal below would prove nothing
        elif probes.zookeeper_four_letter_word(ip, ZK_SECURE_CLIENT_PORT, "srvr", t.admin_cert) is not None:
            accepted.append(zk.name)
    observed = "; ".join(filter(None, [f"admin certificate accepted by {_where(accepted)}" if accepted else "",
                                       f"a broker's unanswered on {_where(unanswered)}" if unanswered else ""]))
    return [result("zookeeper.node-certificates-only", "admin certificate refused, a broker's answered",
                   observed or f"{len(t.topology.zookeepers)} nodes refused the admin certificate",
                   not accepted and not unanswered and bool(t.topology.zookeepers))]

"""Network and TLS probes: plaintext Kafka, the host addresses ports are published on, legacy
TLS and weak suites, TLS 1.2's suites, and the certificates every listener serves."""

from __future__ import annotations

import ipaddress
import re
import ssl

from cryptography import x509

from .. import pki
from . import probes
from .scorecard import ProbeResult, _where, result
from .target import LOOPBACK, Target, _is_specific


def probe_plaintext(t: Target) -> list[ProbeResult]:
    targets = [(f"{host if _is_specific(host) else LOOPBACK}:{port}") for _node, host, port in t.published()]
    targets += [f"{ip}:{port}" for ip, port in t.internal_kafka_addresses()]
    answered = [a for a in targets if probes.kafka_answers_plaintext(*_split(a))]
    observed = f"answered on {_where(answered)}" if answered else f"no answer on {len(targets)} ports"
    return [result("ports.plaintext", "no plaintext Kafka answer", observed, not answered and bool(targets))]


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def probe_bind_address(t: Target) -> list[ProbeResult]:
    allowed = t.settings.bind_address if t.settings.allow_public_bind else None
    expected = "127.0.0.1" + (f" or {allowed} (allowPublicBind)" if allowed and _is_specific(allowed) else "") + \
        "; never every interface"
    wrong = []
    for node, host, port in t.published():
        if not _is_specific(host):
            wrong.append(f"{port} on every interface ({host or '0.0.0.0'})")
        elif not ipaddress.ip_address(host).is_loopback and host != allowed:
            wrong.append(f"{port} on {host}")
    published = t.published()
    observed = _where(wrong) if wrong else f"{len(published)} ports on {', '.join(sorted({h for _, h, _ in published}))}"
    return [result("ports.bind-address", expected, observed, not wrong and bool(published))]


def _offer_everywhere(t: Target, **offer) -> dict[str, probes.HandshakeResult]:
    """The same handshake offer on every TLS endpoint, with a certificate it accepts (an mTLS
    listener that accepted the protocol must not fail the handshake for want of one)."""
    return {e.name: probes.tls_handshake(e.host, e.port, None, e.server_hostname, client_cert=t.client_cert(e), **offer)
            for e in t.endpoints()}


def _refused(probe: str, outcomes: dict[str, probes.HandshakeResult]) -> ProbeResult:
    """Passes only if every listener answered and refused: silence proves nothing."""
    accepted = [f"{name} ({r.detail} {r.cipher})" for name, r in outcomes.items() if r.ok]
    silent = [name for name, r in outcomes.items() if not r.answered]
    observed = "; ".join(filter(None, [f"accepted by {_where(accepted)}" if accepted else "",
                                       f"no answer from {_where(silent)}" if silent else ""]))
    return result(probe, "refused", observed or f"refused by {len(outcomes)} listeners",
                  not accepted and not silent and bool(outcomes))


def probe_legacy_tls(t: Target) -> list[ProbeResult]:
    return [_refused("tls.v1.0", _offer_everywhere(t, **probes.legacy_offer(ssl.TLSVersion.TLSv1))),
            _refused("tls.v1.1", _offer_everywhere(t, **probes.legacy_offer(ssl.TLSVersion.TLSv1_1))),
            _refused("tls.weak-cipher", _offer_everywhere(t, **probes.weak_cipher_offer()))]


AEAD_FORWARD_SECRET = re.compile(r"^ECDHE-(ECDSA|RSA)-(AES\d+-GCM-SHA\d+|CHACHA20-POLY1305)$")


def probe_tls12(t: Target) -> list[ProbeResult]:
    outcomes = _offer_everywhere(t, min_version=ssl.TLSVersion.TLSv1_2, max_version=ssl.TLSVersion.TLSv1_2)
    if "TLSv1.2" not in t.settings.tls_versions:
        return [_refused("tls.v1.2", outcomes)]
    weak = [f"{n} ({r.cipher})" for n, r in outcomes.items() if r.ok and not AEAD_FORWARD_SECRET.match(r.cipher or "")]
    refused = [n for n, r in outcomes.items() if not r.ok]
    observed = "; ".join(filter(None, [f"weak suite on {_where(weak)}" if weak else "",
                                       f"refused by {_where(refused)}" if refused else ""]))
    ciphers = sorted({r.cipher for r in outcomes.values() if r.ok})
    return [result("tls.v1.2", "accepted (tlsVersions has it), ECDHE + AEAD suite only",
                   observed or f"{len(outcomes)} listeners: {', '.join(ciphers)}", not weak and not refused)]


def probe_renegotiation(t: Target) -> list[ProbeResult]:
    """A client-initiated renegotiation on every listener: each is a server-side handshake a
    client may demand at will (a DoS lever, CVE-2011-1473). TLS 1.3 has none."""
    outcomes = {e.name: probes.tls12_renegotiation(e.host, e.port, e.server_hostname, t.client_cert(e), t.ca_file)
                for e in t.endpoints()}
    accepted = [name for name, r in outcomes.items() if r.renegotiated]
    silent = [name for name, r in outcomes.items() if not r.answered]
    # Where TLS 1.2 is enabled, a refusal counts only after a session it could have renegotiated.
    no_session = [f"{name} ({r.detail})" for name, r in outcomes.items()
                  if r.answered and not r.handshake and "TLSv1.2" in t.settings.tls_versions]
    observed = "; ".join(filter(None, [f"renegotiated by {_where(accepted)}" if accepted else "",
                                       f"no answer from {_where(silent)}" if silent else "",
                                       f"no TLS 1.2 session with {_where(no_session, 2)}" if no_session else ""]))
    tls12 = sum(r.handshake for r in outcomes.values())
    return [result("tls.renegotiation", "client-initiated renegotiation refused on every TLS 1.2 listener (TLS 1.3 has none)",
                   observed or f"refused by {tls12} TLS 1.2 listeners" + (f", {len(outcomes) - tls12} speak TLS 1.3 only"
                                                                          if tls12 < len(outcomes) else ""),
                   not accepted and not silent and not no_session and bool(outcomes))]


def probe_certificates(t: Target) -> list[ProbeResult]:
    endpoints = t.endpoints()
    verified = {e.name: probes.tls_handshake(e.host, e.port, t.ca_file, e.server_hostname, client_cert=t.client_cert(e))
                for e in endpoints}
    unverified = [f"{n}: {r.detail}" for n, r in verified.items() if not r.ok]
    chain = result("tls.chain", "verified on every listener", f"failed on {_where(unverified, 2)}" if unverified
                   else f"{len(verified)} listeners verified ({', '.join(sorted({r.detail for r in verified.values()}))})",
                   not unverified and bool(verified))
    served = {e.name: (e, probes.tls_handshake(e.host, e.port, None, e.server_hostname, client_cert=t.client_cert(e)))
              for e in endpoints}
    bad_sans, bad_expiry, days_left = [], [], []
    profile = t.settings.profile
    at = pki.now()
    for name, (endpoint, handshake) in served.items():
        if not handshake.peer_cert:
            bad_sans.append(f"{name}: no certificate ({handshake.detail})")
            bad_expiry.append(f"{name}: no certificate")
            continue
        cert = x509.load_der_x509_certificate(handshake.peer_cert)
        node = endpoint.node
        expected_sans = set(node.dns_names) | ({"localhost", "127.0.0.1"} if node.role == "broker" else set())
        if missing := sorted(expected_sans - set(pki.sans_of(cert))):
            bad_sans.append(f"{name} lacks {', '.join(missing)}")
        subject = pki.subject_name(node.name, node.role, t.settings.env).rfc4514_string()
        if cert.subject.rfc4514_string() != subject:
            bad_sans.append(f"{name} subject {cert.subject.rfc4514_string()}")
        left = (cert.not_valid_after_utc - at).days
        days_left.append((left, name))
        lifetime = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
        if cert.not_valid_before_utc > at or left < 0:
            bad_expiry.append(f"{name} outside its validity")
        elif left <= profile.expiry_warning_days:
            bad_expiry.append(f"{name} expires in {left} d")
        if lifetime > profile.max_leaf_validity_days:
            bad_expiry.append(f"{name} valid {lifetime} d")
    soonest = min(days_left) if days_left else None
    sans = result("tls.sans", "node names (+ localhost, 127.0.0.1 on brokers), CN=<node>,OU=<role>",
                  _where(bad_sans, 2) if bad_sans else f"{len(served)} certificates match",
                  not bad_sans and bool(served))
    expiry = result("tls.expiry", f"valid now, > {profile.expiry_warning_days} d left, "
                    f"≤ {profile.max_leaf_validity_days} d lifetime",
                    _where(bad_expiry, 2) if bad_expiry else
                    (f"soonest: {soonest[1]} in {soonest[0]} d" if soonest else "no certificate"),
                    not bad_expiry and bool(served))
    return [chain, sans, expiry]

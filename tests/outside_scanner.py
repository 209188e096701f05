"""Outside TLS scanners (tools the project did not write) against an environment's TLS
listeners, each with a short allow-list of what a private, internal deployment does
differently by design:

- sslyze (PyPI), judged by its own Mozilla "modern" TLS configuration checker plus the checks
  that checker leaves out (client-initiated renegotiation, legacy protocol versions);
- testssl.sh (Debian), judged by its own severities: anything it rates LOW or worse.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sslyze import (
    CertificateInfoExtraArgument,
    ClientAuthenticationCredentials,
    Scanner,
    ScanCommand,
    ServerNetworkConfiguration,
    ServerNetworkLocation,
    ServerScanRequest,
    ScanCommandsExtraArguments,
    ServerScanStatusEnum,
)
from sslyze.mozilla_tls_profile.tls_config_checker import (
    MozillaTlsConfiguration,
    ServerNotCompliantWithTlsConfiguration,
    TlsConfigurationEnum,
    check_server_against_tls_configuration,
)
from tls_endpoints import Endpoint

from secure_kafka.verify.probes import tls12_renegotiation

# Findings of the Mozilla checker that are choices of this product, each with its reason.
ALLOWED = {
    # 90 days is Mozilla's advice for publicly trusted, ACME-renewed certificates; prod's leaves
    # keep the CA/B Forum's 397-day cap, and `certs rotate --if-expiring-within` renews them.
    "maximum_certificate_lifespan": "397 days (the CA/B Forum's cap) for the leaves of a private CA",
}
# The versions a scan must find refused, whatever the profile.
LEGACY_VERSIONS = ("ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites", "tls_1_1_cipher_suites")
COMMANDS = {
    ScanCommand.CERTIFICATE_INFO, ScanCommand.SSL_2_0_CIPHER_SUITES, ScanCommand.SSL_3_0_CIPHER_SUITES,
    ScanCommand.TLS_1_0_CIPHER_SUITES, ScanCommand.TLS_1_1_CIPHER_SUITES, ScanCommand.TLS_1_2_CIPHER_SUITES,
    ScanCommand.TLS_1_3_CIPHER_SUITES, ScanCommand.TLS_COMPRESSION, ScanCommand.TLS_FALLBACK_SCSV,
    ScanCommand.HEARTBLEED, ScanCommand.ROBOT, ScanCommand.OPENSSL_CCS_INJECTION, ScanCommand.SESSION_RENEGOTIATION,
    ScanCommand.ELLIPTIC_CURVES, ScanCommand.TLS_EXTENDED_MASTER_SECRET,
}


def scan(endpoints: list[Endpoint], ca_file: Path, client_certs: dict[str, tuple[Path, Path]]) -> dict[str, list[str]]:
    """{endpoint name: findings not on the allow-list}. Certificates are validated against the
    environment's CA (``ca_file``), each endpoint is offered its ``client_certs[name]``; an
    endpoint the scanner could not reach is a finding too (a refusal proves nothing about a
    listener that never answered)."""
    private_ca = ScanCommandsExtraArguments(certificate_info=CertificateInfoExtraArgument(custom_ca_file=ca_file))
    requests = {}
    for endpoint in endpoints:
        request = ServerScanRequest(
            server_location=ServerNetworkLocation(hostname=endpoint.server_name, port=endpoint.port, ip_address=endpoint.ip),
            network_configuration=ServerNetworkConfiguration(
                tls_server_name_indication=endpoint.server_name,
                tls_client_auth_credentials=ClientAuthenticationCredentials(
                    certificate_chain_path=client_certs[endpoint.name][0], key_path=client_certs[endpoint.name][1])),
            scan_commands=COMMANDS,
            scan_commands_extra_arguments=private_ca,
        )
        requests[(endpoint.ip, endpoint.port)] = (endpoint.name, request)
    scanner = Scanner()
    scanner.queue_scans([request for _, request in requests.values()])
    modern = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_MODERN)
    findings: dict[str, list[str]] = {}
    for result in scanner.get_results():
        name = requests[(result.server_location.ip_address, result.server_location.port)][0]
        findings[name] = _findings(result, modern)
    return findings


def _findings(result, modern) -> list[str]:
    if result.scan_status != ServerScanStatusEnum.COMPLETED:
        return [f"not scanned: {result.connectivity_error_trace or result.scan_status}"]
    outcome = result.scan_result
    # A check that did not run proves nothing: it is a finding, not a pass.
    failed = [c.value for c in COMMANDS if getattr(outcome, c.value).result is None]
    if failed:
        return [f"{command}: the scan did not complete" for command in sorted(failed)]
    found = []
    try:
        check_server_against_tls_configuration(result, modern)
    except ServerNotCompliantWithTlsConfiguration as exc:
        found += [f"{key}: {text}" for key, text in exc.issues.items() if key not in ALLOWED]
    for version in LEGACY_VERSIONS:
        accepted = getattr(outcome, version).result.accepted_cipher_suites
        if accepted:
            found.append(f"{version}: {len(accepted)} suites accepted")
    if outcome.session_renegotiation.result.is_vulnerable_to_client_renegotiation_dos:
        found.append("session_renegotiation: client-initiated renegotiation accepted")
    return found


# --- testssl.sh ---------------------------------------------------------------------------------

# Protocols, cipher categories, forward secrecy, certificate and server defaults, server
# preferences, and every vulnerability check (-U: Heartbleed, CCS, ROBOT, renegotiation, CRIME,
# POODLE, fallback SCSV, SWEET32, BEAST, LUCKY13, FREAK, LOGJAM, DROWN, RC4). Left out: the
# client simulations and the per-cipher listing, which report and do not judge.
TESTSSL_CHECKS = ("-p", "-s", "-f", "-S", "-P", "-U")
# What testssl.sh rates a problem; OK, INFO, DEBUG and WARN ("could not test") are not.
TESTSSL_SEVERE = {"LOW", "MEDIUM", "HIGH", "CRITICAL"}
# testssl.sh 3.0 decides "Secure Client-Initiated Renegotiation" by `echo R | openssl s_client`'s
# exit status: s_client quits at the end of its input, and when the JVM's refusal arrives after
# that, the exit status is 0 and the verdict "VULNERABLE" (it says "not vulnerable" on the same
# listener when the refusal happens to come first). The finding is set aside only where our own
# probe, which keeps the session open for the answer, sees the renegotiation refused.
TESTSSL_RENEGOTIATION = "secure_client_renego"


def run_testssl(endpoints: list[Endpoint], ca_file: Path, client_certs: dict[str, tuple[Path, Path]],
                 workers: int = 4) -> dict[str, list[str]]:
    """{endpoint name: findings of testssl.sh}. No DNS lookups and no outside contact: it reaches
    each endpoint at its address, names it by its certificate's name (SNI), and validates the
    chain against the environment's CA (``--add-ca``). testssl.sh 3.0 cannot present a client
    certificate, so what needs a finished handshake is not tested on listeners that require one
    (it says WARN); sslyze, which presents one, covers those."""
    with tempfile.TemporaryDirectory(prefix="sk-testssl-") as tmp, ThreadPoolExecutor(workers) as pool:
        futures = {e.name: pool.submit(_testssl_one, e, ca_file, client_certs[e.name], Path(tmp)) for e in endpoints}
        return {name: future.result() for name, future in futures.items()}


def _testssl_one(endpoint: Endpoint, ca_file: Path, client_cert: tuple[Path, Path], tmp: Path) -> list[str]:
    report = tmp / f"{endpoint.name.replace('/', '_')}.json"
    argv = ["testssl", "--quiet", "--color", "0", "--warnings", "off", "--nodns", "none", *TESTSSL_CHECKS,
            "--add-ca", str(ca_file), "--jsonfile", str(report), "--ip", endpoint.ip,
            f"{endpoint.server_name}:{endpoint.port}"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if not report.exists():
        return [f"not scanned: testssl exited {run.returncode}: {(run.stdout + run.stderr).strip()[-300:]}"]
    entries = json.loads(report.read_text() or "[]")
    return judge_testssl(entries, lambda: _renegotiation_refused(endpoint, ca_file, client_cert))


def judge_testssl(entries: list[dict], renegotiation_refused) -> list[str]:
    """The entries testssl.sh rates LOW or worse, but for a renegotiation verdict that
    ``renegotiation_refused()`` (our probe, asked only then) contradicts; a scan that did not
    reach the server (no protocol verdict) is a finding in itself."""
    if not any(e["id"] == "TLS1_3" or e["id"] == "TLS1_2" for e in entries):
        problems = [e["finding"] for e in entries if e["severity"] in ("FATAL", "WARN")]
        return [f"not scanned: {'; '.join(problems) or 'no protocol was tested'}"]
    found = [f"{e['id']}: {e['severity']} {e['finding']}" for e in entries
             if e["severity"] in TESTSSL_SEVERE or e["severity"] == "FATAL"]
    if any(f.startswith(TESTSSL_RENEGOTIATION + ":") for f in found) and renegotiation_refused():
        found = [f for f in found if not f.startswith(TESTSSL_RENEGOTIATION + ":")]
    return found


def _renegotiation_refused(endpoint: Endpoint, ca_file: Path, client_cert: tuple[Path, Path]) -> bool:
    result = tls12_renegotiation(endpoint.ip, endpoint.port, endpoint.server_name, client_cert, ca_file)
    return result.handshake and not result.renegotiated

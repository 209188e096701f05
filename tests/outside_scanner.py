"""An outside TLS scanner (sslyze, a tool the project did not write) against an environment's
TLS listeners, judged by its own Mozilla "modern" TLS configuration checker plus the checks
that checker leaves out (client-initiated renegotiation, legacy protocol versions), with a
short allow-list of what a private, internal deployment does differently by design.
"""

from __future__ import annotations

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

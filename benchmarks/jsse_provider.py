"""A faster TLS provider for the benchmark's broker (#19's last lever): Conscrypt, Google's
JSSE provider over BoringSSL, whose record layer and AES-GCM run in native code.

The runtime image cannot take it as a file: its root is read-only and its mounts are
``noexec``, so Conscrypt could not unpack its native library where the JVM loads it from. This
builds ``<runtime tag>-conscrypt-<version>``: the jar among Kafka's, the library unpacked in
``/opt/conscrypt`` (on ``java.library.path``), Conscrypt registered after the JDK's providers
(``java.security.properties``, through ``JDK_JAVA_OPTIONS``, which every ``java`` of the image
reads), and the class-data archive made again for the longer class path. The broker's
listeners take it by ``ssl.provider`` (``BROKER_PROPERTIES``); its ZooKeeper client keeps the
JDK's (with Conscrypt first for everything, that client never connected). Nothing else of
the broker changes: same protocols, suites and client authentication from ``server.properties``.

Measured (session 18): with Conscrypt 2.5.2 the broker does not start. Kafka checks at start
that a client and a server SSLEngine of its settings can talk, and under TLS 1.3 Conscrypt
hands the JDK's trust manager the auth type ``GENERIC``, which it refuses ("Unknown authType:
GENERIC"; Conscrypt issue 1033, open). Conscrypt works there only with its own trust manager,
which Kafka cannot choose (``ssl.trustmanager.algorithm`` picks an algorithm, not a provider)
and which would replace the JDK's PKIX validation our CRL revocation checking runs in.
``security_tax_bench.py --jsse conscrypt`` shows it again (``first_error``); a fixed release
is a ``VERSION`` away.
"""

from __future__ import annotations

from pathlib import Path

import broker_variant

VERSION = "2.5.2"
ARTIFACT = f"org.conscrypt:conscrypt-openjdk-uber:{VERSION}"
CACHE = Path.home() / ".cache" / "secure-kafka" / f"conscrypt-{VERSION}"
NATIVE = "libconscrypt_openjdk_jni-linux-x86_64.so"
# JDK 17's providers, then Conscrypt: a provider list replaced entry by entry.
PROVIDERS = ("SUN", "SunRsaSign", "SunEC", "SunJSSE", "SunJCE", "SunJGSS", "SunSASL", "XMLDSig", "SunPCSC",
             "JdkLDAP", "JdkSASL", "SunPKCS11", "org.conscrypt.OpenSSLProvider")
BROKER_PROPERTIES = {"ssl.provider": "Conscrypt"}  # the broker's listeners' SSLContext comes from it
JAVA_OPTIONS = ("-Djava.security.properties=/opt/conscrypt/java.security "
                "-Djava.library.path=/opt/conscrypt:/usr/java/packages/lib:/usr/lib64:/lib64:/lib:/usr/lib "
                "-Dorg.conscrypt.native.workdir=/opt/conscrypt")


def files() -> dict[str, Path]:
    """The jar, its native library and the provider list, for the image's build context."""
    jar = broker_variant.from_maven(ARTIFACT, CACHE)
    native = broker_variant.from_maven(ARTIFACT, CACHE, f"META-INF/native/{NATIVE}")
    security = CACHE / "java.security"
    security.write_text("".join(f"security.provider.{n}={name}\n" for n, name in enumerate(PROVIDERS, 1)))
    return {"conscrypt.jar": jar, NATIVE: native, "java.security": security}


def conscrypt_image(api, runtime_tag: str) -> str:
    """``runtime_tag`` with Conscrypt among the JVM's providers, built once."""
    dockerfile = (f"FROM {runtime_tag}\nUSER root\n"
                  f"COPY conscrypt.jar /opt/kafka/libs/conscrypt-openjdk-uber-{VERSION}.jar\n"
                  f"COPY {NATIVE} java.security /opt/conscrypt/\n"
                  f'ENV JDK_JAVA_OPTIONS="{JAVA_OPTIONS}"\n'
                  "RUN class-data-archive /opt/kafka/kafka.jsa && rm -rf /tmp/hsperfdata_root\n"
                  "USER 10001:10001\n")
    return broker_variant.variant_image(api, f"{runtime_tag}-conscrypt-{VERSION}", dockerfile, files())


def in_use(api, container: str) -> str:
    """Whether the container's JVM has mapped Conscrypt's native library (it does at its first TLS session)."""
    pid = api.inspect_container(container)["State"]["Pid"]
    mapped = NATIVE in Path(f"/proc/{pid}/maps").read_text()
    return "yes, its native library is mapped" if mapped else "NO: its native library is not mapped"


def first_error(api, container: str) -> str:
    """The first exception the container's broker logged."""
    logs = api.logs(container).decode(errors="replace").splitlines()
    return next((line.strip() for line in logs if "Exception:" in line), "no exception in its log")

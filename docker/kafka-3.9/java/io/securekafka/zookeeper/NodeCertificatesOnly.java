package io.securekafka.zookeeper;

import java.io.IOException;
import java.io.InputStream;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.CertificateException;
import java.security.cert.PKIXBuilderParameters;
import java.security.cert.X509CertSelector;
import java.security.cert.X509Certificate;
import java.util.Set;
import java.util.function.Supplier;
import javax.naming.InvalidNameException;
import javax.naming.ldap.LdapName;
import javax.naming.ldap.Rdn;
import javax.net.ssl.CertPathTrustManagerParameters;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509ExtendedTrustManager;
import javax.security.auth.x500.X500Principal;

/**
 * The TLS context of ZooKeeper's client port (zoo.cfg {@code ssl.context.supplier.class}).
 *
 * <p>ZooKeeper's own context trusts every certificate of the environment CA, and its client
 * hostname check never runs on the Netty port, so any client certificate (an application's,
 * the admin's) completed TLS and could ask four-letter words. This context loads the same
 * keystore and truststore and checks revocation as ZooKeeper would ({@code ssl.crl}), and then
 * accepts a client only if its certificate is a node's (a broker's, a ZooKeeper node's, or a
 * KRaft controller's, which writes to ZooKeeper while a migration runs, KIP-866): subjects are
 * {@code CN=<name>,OU=<kind>,O=secure-kafka,L=<env>} and only the nodes' kinds pass.
 * Protocols, cipher suites and {@code ssl.clientAuth} are still applied by ZooKeeper.
 *
 * <p>ZooKeeper turns every zoo.cfg key it does not parse into a {@code zookeeper.*} system
 * property: that is where the store locations and passwords are read from.
 */
public final class NodeCertificatesOnly implements Supplier<SSLContext> {
    static final Set<String> NODE_KINDS = Set.of("broker", "zookeeper", "controller");
    private static final String PREFIX = "zookeeper.ssl.";

    @Override
    public SSLContext get() {
        try {
            KeyManagerFactory keys = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            keys.init(load("keyStore"), password("keyStore"));
            PKIXBuilderParameters parameters = new PKIXBuilderParameters(load("trustStore"), new X509CertSelector());
            // As ZooKeeper's X509Util does: CRLs come from the certificates' distribution points.
            parameters.setRevocationEnabled(Boolean.getBoolean(PREFIX + "crl"));
            TrustManagerFactory trust = TrustManagerFactory.getInstance("PKIX");
            trust.init(new CertPathTrustManagerParameters(parameters));
            X509ExtendedTrustManager delegate = null;
            for (TrustManager manager : trust.getTrustManagers()) {
                if (manager instanceof X509ExtendedTrustManager) {
                    delegate = (X509ExtendedTrustManager) manager;
                }
            }
            if (delegate == null) {
                throw new GeneralSecurityException("the PKIX trust manager factory made no X509ExtendedTrustManager");
            }
            SSLContext context = SSLContext.getInstance(System.getProperty(PREFIX + "protocol", "TLSv1.3"));
            context.init(keys.getKeyManagers(), new TrustManager[] {new NodesOnly(delegate)}, null);
            return context;
        } catch (GeneralSecurityException | IOException e) {
            throw new IllegalStateException("ZooKeeper's TLS context: " + e, e);
        }
    }

    private static KeyStore load(String store) throws GeneralSecurityException, IOException {
        String location = System.getProperty(PREFIX + store + ".location");
        if (location == null) {
            throw new GeneralSecurityException(PREFIX + store + ".location is not set");
        }
        KeyStore keyStore = KeyStore.getInstance(System.getProperty(PREFIX + store + ".type", "PKCS12"));
        try (InputStream in = Files.newInputStream(Path.of(location))) {
            keyStore.load(in, password(store));
        }
        return keyStore;
    }

    private static char[] password(String store) {
        String password = System.getProperty(PREFIX + store + ".password");
        return password == null ? null : password.toCharArray();
    }

    /** The node kinds (OU values) of a subject. */
    static Set<String> kinds(X500Principal subject) throws CertificateException {
        try {
            java.util.HashSet<String> kinds = new java.util.HashSet<>();
            for (Rdn rdn : new LdapName(subject.getName(X500Principal.RFC2253)).getRdns()) {
                if ("OU".equalsIgnoreCase(rdn.getType())) {
                    kinds.add(String.valueOf(rdn.getValue()));
                }
            }
            return kinds;
        } catch (InvalidNameException e) {
            throw new CertificateException("unreadable subject " + subject, e);
        }
    }

    static void requireNode(X509Certificate[] chain) throws CertificateException {
        Set<String> kinds = kinds(chain[0].getSubjectX500Principal());
        if (kinds.size() != 1 || !NODE_KINDS.containsAll(kinds)) {
            throw new CertificateException("ZooKeeper accepts only nodes' certificates (brokers', ZooKeeper nodes', controllers'), not "
                    + chain[0].getSubjectX500Principal().getName());
        }
    }

    /** The PKIX checks first (chain, validity, revocation), then the kind of node. */
    static final class NodesOnly extends X509ExtendedTrustManager {
        private final X509ExtendedTrustManager delegate;

        NodesOnly(X509ExtendedTrustManager delegate) {
            this.delegate = delegate;
        }

        @Override
        public void checkClientTrusted(X509Certificate[] chain, String authType) throws CertificateException {
            delegate.checkClientTrusted(chain, authType);
            requireNode(chain);
        }

        @Override
        public void checkClientTrusted(X509Certificate[] chain, String authType, Socket socket) throws CertificateException {
            delegate.checkClientTrusted(chain, authType, socket);
            requireNode(chain);
        }

        @Override
        public void checkClientTrusted(X509Certificate[] chain, String authType, SSLEngine engine) throws CertificateException {
            delegate.checkClientTrusted(chain, authType, engine);
            requireNode(chain);
        }

        @Override
        public void checkServerTrusted(X509Certificate[] chain, String authType) throws CertificateException {
            throw new CertificateException("the client port's context is a server's: it trusts no server");
        }

        @Override
        public void checkServerTrusted(X509Certificate[] chain, String authType, Socket socket) throws CertificateException {
            checkServerTrusted(chain, authType);
        }

        @Override
        public void checkServerTrusted(X509Certificate[] chain, String authType, SSLEngine engine) throws CertificateException {
            checkServerTrusted(chain, authType);
        }

        @Override
        public X509Certificate[] getAcceptedIssuers() {
            return delegate.getAcceptedIssuers();
        }
    }
}

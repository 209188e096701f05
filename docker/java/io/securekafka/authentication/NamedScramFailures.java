package io.securekafka.authentication;

import java.security.Provider;
import java.util.Map;
import javax.security.auth.callback.CallbackHandler;
import javax.security.sasl.SaslException;
import javax.security.sasl.SaslServer;
import javax.security.sasl.SaslServerFactory;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.security.auth.SecurityProviderCreator;
import org.apache.kafka.common.security.scram.internals.ScramFormatter;
import org.apache.kafka.common.security.scram.internals.ScramMechanism;
import org.apache.kafka.common.security.scram.internals.ScramMessages.ClientFirstMessage;
import org.apache.kafka.common.security.scram.internals.ScramSaslServer.ScramSaslServerFactory;

/**
 * Kafka's own SCRAM, but a failed login names the user it was for (broker config
 * {@code security.providers}).
 *
 * <p>Kafka logs a failed SASL login as {@code Failed authentication with /<client address>
 * (channelId=<local>-<remote>-<n>) (<message>)} and the message never names the user. This
 * provider, installed ahead of Kafka's, serves Kafka's own {@link ScramSaslServerFactory} and
 * wraps each server it makes: every check is Kafka's; a failure is rethrown as a
 * {@link SaslAuthenticationException} whose message names the user the client claimed, so the
 * one log line holds the user, the listener (the local port) and the client address. The
 * message is the same for an unknown user and a wrong password (the client learns nothing it
 * did not send), and the name is escaped to printable ASCII and cut short, so a hostile name
 * cannot forge or split a line of the audit trail.
 */
public final class NamedScramFailures implements SecurityProviderCreator {
    static final int MAX_NAME = 64;

    @Override
    public Provider getProvider() {
        return new NamedScramProvider();
    }

    static final class NamedScramProvider extends Provider {
        private static final long serialVersionUID = 1L;

        NamedScramProvider() {
            super("SecureKafkaNamedScram", "1.0", "Kafka's SCRAM server; failed logins name their user");
            for (String mechanism : ScramMechanism.mechanismNames()) {
                put("SaslServerFactory." + mechanism, Factory.class.getName());
            }
        }
    }

    /** Instantiated by {@code javax.security.sasl.Sasl} through the provider: public, no arguments. */
    public static final class Factory implements SaslServerFactory {
        private final SaslServerFactory kafka = new ScramSaslServerFactory();

        @Override
        public SaslServer createSaslServer(String mechanism, String protocol, String serverName,
                                           Map<String, ?> props, CallbackHandler callbackHandler) throws SaslException {
            SaslServer server = kafka.createSaslServer(mechanism, protocol, serverName, props, callbackHandler);
            return server == null ? null : new NamedFailures(server);
        }

        @Override
        public String[] getMechanismNames(Map<String, ?> props) {
            return kafka.getMechanismNames(props);
        }
    }

    static final class NamedFailures implements SaslServer {
        private final SaslServer scram;
        private String user;

        NamedFailures(SaslServer scram) {
            this.scram = scram;
        }

        @Override
        public byte[] evaluateResponse(byte[] response) throws SaslException {
            if (user == null) {
                user = claimedUser(response);
            }
            try {
                return scram.evaluateResponse(response);
            } catch (SaslException | SaslAuthenticationException e) {
                throw new SaslAuthenticationException("Authentication failed: invalid credentials for user " + user
                        + " with SASL mechanism " + scram.getMechanismName(), e);
            }
        }

        @Override
        public String getMechanismName() {
            return scram.getMechanismName();
        }

        @Override
        public boolean isComplete() {
            return scram.isComplete();
        }

        @Override
        public String getAuthorizationID() {
            return scram.getAuthorizationID();
        }

        @Override
        public byte[] unwrap(byte[] incoming, int offset, int len) throws SaslException {
            return scram.unwrap(incoming, offset, len);
        }

        @Override
        public byte[] wrap(byte[] outgoing, int offset, int len) throws SaslException {
            return scram.wrap(outgoing, offset, len);
        }

        @Override
        public Object getNegotiatedProperty(String propName) {
            return scram.getNegotiatedProperty(propName);
        }

        @Override
        public void dispose() throws SaslException {
            scram.dispose();
        }
    }

    /** The user a SCRAM client-first message claims, escaped; "?" when it is not one. */
    static String claimedUser(byte[] clientFirst) {
        try {
            return escaped(ScramFormatter.username(new ClientFirstMessage(clientFirst).saslName()));
        } catch (SaslException | RuntimeException e) {
            return "?";
        }
    }

    /** Letters, digits and {@code . _ - @ +} as they are; anything else as \\xNN or \\uNNNN. */
    static String escaped(String name) {
        StringBuilder out = new StringBuilder();
        for (char c : name.toCharArray()) {
            if (out.length() >= MAX_NAME) {
                return out.append("...").toString();
            }
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || ".-_@+".indexOf(c) >= 0) {
                out.append(c);
            } else if (c < 0x100) {
                out.append(String.format("\\x%02x", (int) c));
            } else {
                out.append(String.format("\\u%04x", (int) c));
            }
        }
        return out.length() == 0 ? "?" : out.toString();
    }
}

// Package auth proves who sent a webhook. Each scheme is a [Verifier] in its
// own file; a receiver holds one. Adding a scheme is adding a file and a
// case in [Config.Verifier], never an edit in the HTTP handler.
//
// The schemes: [Mist] (Mist's two HMAC headers), [HMAC] (any HMAC signature
// header, with an optional signed timestamp and delivery id: GitHub, Slack,
// Standard Webhooks), [Basic], [Token] (bearer, a named header, the whole
// Authorization value, a query parameter, Splunk HEC), [JWT] (OAuth2 access
// tokens checked against a JWKS) and [None]. The wrappers [IPAllow],
// [RequireHeaders] and [Replay] add a source-IP allowlist, required custom
// headers and replay protection around any of them.
//
// Every comparison of a secret is constant time and looks at every
// configured secret (no early exit); tokens and passwords are compared as
// SHA-256 digests, so the time taken tells neither which secret matched nor
// its length. No secret, token, signature or password appears in an error,
// a log line, String, GoString or LogValue. A failure is an [*Error]: 401
// ([ErrUnauthorized]) or 403 ([ErrForbidden], only for [ReasonIPNotAllowed]),
// with a reason from the fixed set [Reasons] and, for Basic, Bearer, JWT and
// Splunk, a WWW-Authenticate challenge.
//
// # The default receiver from the environment
//
// [Config] reads these variables (the caller adds the MISTBRIDGE_ prefix):
//
//	MISTBRIDGE_AUTH_TYPE               mist|hmac|basic|bearer|jwt|header|authheader|querystring|splunk|none;
//	                                   unset: mist when MISTBRIDGE_WEBHOOK_SECRET is set, else start-up fails
//	MISTBRIDGE_WEBHOOK_SECRET          mist, hmac: secrets, comma-separated (rotation); whsec_<base64> is decoded for hmac
//	MISTBRIDGE_AUTH_HMAC_HEADER        hmac: the signature header (required)
//	MISTBRIDGE_AUTH_HMAC_ALGORITHM     hmac: sha1|sha256|sha512 [sha256]
//	MISTBRIDGE_AUTH_HMAC_ENCODING      hmac: hex|base64 [hex]
//	MISTBRIDGE_AUTH_HMAC_PREFIX        hmac: required signature prefix, e.g. sha256= [none]
//	MISTBRIDGE_AUTH_HMAC_TEMPLATE      hmac: signed content with {body}, {timestamp}, {id} [{body}]
//	MISTBRIDGE_AUTH_HMAC_TIMESTAMP_HEADER  hmac: header of the signed Unix time [none]
//	MISTBRIDGE_AUTH_HMAC_TOLERANCE     hmac: how far that time may be from now [5m]
//	MISTBRIDGE_AUTH_HMAC_ID_HEADER     hmac: delivery id header [none]
//	MISTBRIDGE_AUTH_REPLAY_WINDOW      hmac with an id or timestamp: how long deliveries are remembered,
//	                                   at least twice the tolerance [10m]
//	MISTBRIDGE_AUTH_REPLAY_SIZE        how many deliveries are remembered at most [100000]
//	MISTBRIDGE_AUTH_USERNAME, _PASSWORD  basic: both required
//	MISTBRIDGE_AUTH_TOKEN              bearer, header, authheader, querystring, splunk: tokens, comma-separated
//	MISTBRIDGE_AUTH_HEADER             header: the header carrying the token (required)
//	MISTBRIDGE_AUTH_QUERY_PARAM        querystring: the parameter [token]
//	MISTBRIDGE_AUTH_JWKS_URL           jwt: the issuer's JWKS (required; http:// only with a warning)
//	MISTBRIDGE_AUTH_JWT_ISSUER         jwt: required iss
//	MISTBRIDGE_AUTH_JWT_AUDIENCE       jwt: accepted aud values, comma-separated (required)
//	MISTBRIDGE_AUTH_JWT_ALGORITHMS     jwt: from RS256..RS512, PS256..PS512, ES256..ES512, EdDSA [RS256,ES256]
//	MISTBRIDGE_AUTH_JWT_LEEWAY         jwt: clock skew on exp, nbf, iat [60s]
//	MISTBRIDGE_AUTH_ALLOW_CIDRS        any type: source-IP allowlist, CIDRs or addresses; others get 403 [all]
//	MISTBRIDGE_AUTH_TRUSTED_PROXIES    proxies whose X-Forwarded-For is believed (needs ALLOW_CIDRS) [none]
//	MISTBRIDGE_AUTH_REQUIRE_HEADERS    any type: Name=value,... every request must carry [none]
//
// The seed's rules stop start-up: none takes no credentials, basic needs
// user and password, the token types need a token, and no type takes the
// credentials of another (MISTBRIDGE_WEBHOOK_SECRET, _AUTH_USERNAME,
// _AUTH_PASSWORD, _AUTH_TOKEN). Every message names the variable and the
// accepted values.
package auth

// Package receivers manages webhook receivers as a resource: a SQLite
// [Store] under the data directory, the REST API of DESIGN.md ("Receivers
// API") served by [NewAPI], and [Live], which turns the stored receivers
// into the [bridge.Receiver] set the server answers with, at once after
// every change.
//
// Credentials (secret, password, token) are write-only: every response
// shows them as [Mask], and no log line, error or String of this package
// holds one.
package receivers

import (
	"errors"
	"fmt"
	"log/slog"
	"path"
	"regexp"
	"strings"

	"github.com/mistbridge/mistbridge/bridge/auth"
)

// Mask is what a set credential reads in every response. Sent back in a
// PUT or PATCH it means "keep the stored one".
const Mask = "********"

// Sentinel errors of the store and the API; the API maps them to statuses
// in one place ([statusOf]).
var (
	ErrNotFound = errors.New("receivers: not found")
	ErrConflict = errors.New("receivers: name already taken")
)

// Receiver is one managed webhook endpoint, POST /webhooks/<Name>, as the
// API shows it (JSON names are the API's). Secret and Token hold one
// credential or several comma-separated (rotation). Inside this package
// the credential fields hold the real values; [Receiver.Masked] is what
// leaves it. String and LogValue never show a credential.
type Receiver struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	Enabled       bool     `json:"enabled"`
	AuthType      string   `json:"authType"`
	Secret        string   `json:"secret,omitempty"`
	UserName      string   `json:"userName,omitempty"`
	Password      string   `json:"password,omitempty"`
	Token         string   `json:"token,omitempty"`
	Header        string   `json:"header,omitempty"`
	QueryParam    string   `json:"queryParam,omitempty"`
	HMACHeader    string   `json:"hmacHeader,omitempty"`
	HMACAlgorithm string   `json:"hmacAlgorithm,omitempty"`
	HMACEncoding  string   `json:"hmacEncoding,omitempty"`
	HMACPrefix    string   `json:"hmacPrefix,omitempty"`
	JWKSURL       string   `json:"jwksUrl,omitempty"`
	Issuer        string   `json:"issuer,omitempty"`
	Audience      string   `json:"audience,omitempty"`
	Topics        []string `json:"topics"`
	URL           string   `json:"url"`
	CreatedTime   int64    `json:"createdTime"`
	ModifiedTime  int64    `json:"modifiedTime"`

	// version counts the updates, so [Live] rebuilds a verifier only when
	// its receiver changed.
	version int64
}

// Masked returns r with every set credential replaced by [Mask] and Topics
// never null.
func (r Receiver) Masked() Receiver {
	mask := func(s string) string {
		if s == "" {
			return ""
		}
		return Mask
	}
	r.Secret, r.Password, r.Token = mask(r.Secret), mask(r.Password), mask(r.Token)
	if r.Topics == nil {
		r.Topics = []string{}
	}
	return r
}

// LogValue shows r without its credentials.
func (r Receiver) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", r.ID), slog.String("name", r.Name),
		slog.Bool("enabled", r.Enabled), slog.String("auth_type", r.AuthType))
}

// String is LogValue as text, so that %v shows no credential.
func (r Receiver) String() string { return r.LogValue().String() }

// GoString is String.
func (r Receiver) GoString() string { return r.String() }

// Spec returns how r authenticates, for [auth.Spec.Verifier].
func (r *Receiver) Spec() auth.Spec {
	s := auth.Spec{
		Type:          r.AuthType,
		Secret:        splitList(r.Secret),
		UserName:      r.UserName,
		Password:      r.Password,
		Token:         splitList(r.Token),
		Header:        r.Header,
		QueryParam:    r.QueryParam,
		HMACHeader:    r.HMACHeader,
		HMACAlgorithm: r.HMACAlgorithm,
		HMACEncoding:  r.HMACEncoding,
		HMACPrefix:    r.HMACPrefix,
		JWKSURL:       r.JWKSURL,
		Issuer:        r.Issuer,
	}
	if a := strings.TrimSpace(r.Audience); a != "" {
		s.Audience = []string{a}
	}
	return s
}

// Field names of the API that are not [auth.Spec]'s.
const (
	FieldName    = "name"
	FieldEnabled = "enabled"
	FieldTopics  = "topics"
	FieldBody    = "body"
)

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// maxTopics bounds the patterns of one receiver.
const maxTopics = 100

// Validate checks r as a POST or PUT would store it. The error joins one
// [*auth.FieldError] per problem, each naming its JSON field; none quotes
// a credential.
func (r *Receiver) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &auth.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if !namePattern.MatchString(r.Name) {
		bad(FieldName, "name %q is invalid: want 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit (^[a-z0-9][a-z0-9_-]{0,62}$)", r.Name)
	}
	// A mask is what a response shows, never a credential: storing it
	// would lock the sender out.
	for _, c := range []struct{ field, v string }{{auth.FieldSecret, r.Secret}, {auth.FieldPassword, r.Password}, {auth.FieldToken, r.Token}} {
		if c.v == Mask {
			bad(c.field, "%s is the mask %s, not a credential: send the credential (a PUT or PATCH may send the mask to keep the stored one)", c.field, Mask)
		}
	}
	if t := strings.ToLower(strings.TrimSpace(r.AuthType)); t == "" {
		bad(auth.FieldType, "authType is required: want one of %s", strings.Join(auth.Types, ", "))
	} else {
		spec := r.Spec()
		if err := spec.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(r.Topics) > maxTopics {
		bad(FieldTopics, "topics has %d patterns: want at most %d", len(r.Topics), maxTopics)
	}
	for i, p := range r.Topics {
		if _, err := path.Match(p, ""); err != nil || strings.TrimSpace(p) == "" || len(p) > 200 {
			bad(FieldTopics, "topics[%d]=%q is not a topic pattern: want a topic or a shell pattern such as device-* (at most 200 characters)", i, p)
		}
	}
	return errors.Join(errs...)
}

// normalise puts r in its stored form: the auth type in lower case, lists
// trimmed.
func (r *Receiver) normalise() {
	r.AuthType = strings.ToLower(strings.TrimSpace(r.AuthType))
	r.Secret = strings.Join(splitList(r.Secret), ",")
	r.Token = strings.Join(splitList(r.Token), ",")
	for i := range r.Topics {
		r.Topics[i] = strings.TrimSpace(r.Topics[i])
	}
}

// splitList splits a comma-separated credential list, trimming each and
// dropping empty ones (as the environment's lists are read).
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// owns reports whether the auth type typ reads the credential field.
func owns(typ, field string) bool {
	switch field {
	case auth.FieldSecret:
		return typ == "mist" || typ == "hmac"
	case auth.FieldUserName, auth.FieldPassword:
		return typ == "basic"
	case auth.FieldToken:
		switch typ {
		case "bearer", "header", "authheader", "querystring", "splunk":
			return true
		}
	}
	return false
}

package codec_test

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mistbridge/mistbridge/codec"
)

// hash12 is the documented hash of the token and key encodings, written
// from the contract: the first 12 characters of the lowercase unpadded
// base32 of the SHA-256 of the value.
func hash12(s string) string {
	sum := sha256.Sum256([]byte(s))
	return strings.ToLower(base32.StdEncoding.EncodeToString(sum[:]))[:12]
}

func isTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func TestSubjectToken(t *testing.T) {
	tests := []struct {
		name, value string
		present     bool
		want        string
	}{
		{name: "missing", want: "_"},
		{name: "empty", present: true, want: "__" + hash12("")},
		{name: "uuid", value: "4ac1dcf4-9d8b-7211-65c4-057819f0862b", present: true, want: "4ac1dcf4-9d8b-7211-65c4-057819f0862b"},
		{name: "star", value: "*", present: true, want: "_-_" + hash12("*")},
		{name: "gt", value: ">", present: true, want: "_-_" + hash12(">")},
		{name: "dot", value: "a.b", present: true, want: "_a-b_" + hash12("a.b")},
		{name: "space and newline", value: "a b\n", present: true, want: "_a-b-_" + hash12("a b\n")},
		{name: "utf-8 byte by byte", value: "é", present: true, want: "_--_" + hash12("é")},
		{name: "long", value: strings.Repeat("x", 5000), present: true, want: "_" + strings.Repeat("x", 24) + "_" + hash12(strings.Repeat("x", 5000))},
		{name: "looks encoded", value: "_a_" + hash12("a"), present: true, want: "__a_" + hash12("a")[:12] + "_" + hash12("_a_"+hash12("a"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := codec.SubjectToken(tt.value, tt.present); got != tt.want {
				t.Errorf("SubjectToken(%.40q, %v) = %q, want %q", tt.value, tt.present, got, tt.want)
			}
		})
	}
	// Every sanitised form that used to collapse into one token is now
	// distinct.
	seen := map[string]string{}
	for _, v := range []string{"*", ">", "a.b", "a_b", "a-b", "", "_", "__", " "} {
		tok := codec.SubjectToken(v, true)
		if prev, ok := seen[tok]; ok {
			t.Errorf("%q and %q share the token %q", prev, v, tok)
		}
		seen[tok] = v
	}
	if _, ok := seen[codec.SubjectToken("", false)]; ok {
		t.Errorf("missing and present share a token")
	}
}

// TestWorstSubject builds the longest subject an event can make and checks
// it fits nats-server's control line (4096 bytes) with room for the rest
// of a PUB/HPUB line.
func TestWorstSubject(t *testing.T) {
	long := strings.Repeat("\u00e9.*> ", 2000)
	ev := codec.Map("device-events", []byte(`{"org_id":"`+long+`","site_id":"`+long+`"}`))
	subject := codec.Subject("mist", &ev)
	if n := len(subject); n > 4096-200 {
		t.Errorf("subject is %d bytes", n)
	}
	worst := "mist." + strings.Repeat("t", codec.MaxTopicLen) + "." + strings.Repeat("x", codec.MaxTokenLen) + "." + strings.Repeat("x", codec.MaxTokenLen)
	ev = codec.Event{Topic: strings.Repeat("t", codec.MaxTopicLen), Org: long, Site: long}
	if got := codec.Subject("mist", &ev); len(got) > len(worst) || len(worst) >= 4096 {
		t.Errorf("subject %d bytes, bound %d", len(got), len(worst))
	}
	if k := ev.PartitionKey(); len(k) > codec.MaxValueLen+1+12 {
		t.Errorf("key is %d bytes", len(k))
	}
}

func TestBoundValue(t *testing.T) {
	v300 := strings.Repeat("a", 300)
	// 255 ASCII bytes then "é": the cut at 256 falls inside the é.
	split := strings.Repeat("a", 255) + "é" + strings.Repeat("b", 10)
	tests := []struct{ name, in, want string }{
		{name: "empty", in: "", want: ""},
		{name: "uuid", in: "4ac1dcf4-9d8b-7211-65c4-057819f0862b", want: "4ac1dcf4-9d8b-7211-65c4-057819f0862b"},
		{name: "256 bytes as is", in: strings.Repeat("z", 256), want: strings.Repeat("z", 256)},
		{name: "odd bytes as is", in: "a/b c\n", want: "a/b c\n"},
		{name: "300 bytes", in: v300, want: v300[:256] + "~" + hash12(v300)},
		{name: "cut on a rune start", in: split, want: split[:255] + "~" + hash12(split)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := codec.BoundValue(tt.in); got != tt.want {
				t.Errorf("BoundValue = %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzSubjectToken checks the token contract on any value: only
// [A-Za-z0-9_-], never empty, bounded, and the structure that makes it
// injective: a value is returned verbatim exactly when it is clean, a clean
// value never starts with '_', "_" alone is missing, and any other token
// starts with '_' and ends with the hash of the value.
func FuzzSubjectToken(f *testing.F) {
	for _, s := range []string{"", "_", "a", "a.b", "*", ">", "4ac1dcf4-9d8b-7211-65c4-057819f0862b", strings.Repeat("x", 65), "\xff\x00\n", "_abc"} {
		f.Add(s, true)
	}
	f.Add("", false)
	f.Fuzz(func(t *testing.T, value string, present bool) {
		tok := codec.SubjectToken(value, present)
		if tok == "" || len(tok) > codec.MaxTokenLen {
			t.Fatalf("token %q has length %d", tok, len(tok))
		}
		for i := 0; i < len(tok); i++ {
			if !isTokenChar(tok[i]) {
				t.Fatalf("token %q has byte %q", tok, tok[i])
			}
		}
		clean := len(value) >= 1 && len(value) <= 64 && value[0] != '_'
		for i := 0; i < len(value) && clean; i++ {
			clean = isTokenChar(value[i])
		}
		switch {
		case !present:
			if tok != "_" {
				t.Fatalf("missing value gives %q", tok)
			}
		case clean:
			if tok != value {
				t.Fatalf("clean value %q gives %q", value, tok)
			}
		default:
			if tok[0] != '_' || len(tok) < 14 || len(tok) > 38 || !strings.HasSuffix(tok, "_"+hash12(value)) {
				t.Fatalf("value %q gives %q, want _<prefix>_%s", value, tok, hash12(value))
			}
			prefix := tok[1 : len(tok)-13]
			if len(prefix) != min(len(value), 24) {
				t.Fatalf("value %q gives prefix %q", value, prefix)
			}
		}
	})
}

// FuzzBoundValue checks the key and header bound on any value: at most
// MaxValueLen bytes verbatim, longer values bounded, valid UTF-8 kept
// valid, and the structure that makes it injective: a result of at most
// MaxValueLen bytes is the value, a longer one ends with its hash.
func FuzzBoundValue(f *testing.F) {
	for _, s := range []string{"", "a", strings.Repeat("é", 200), strings.Repeat("x", 257)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		got := codec.BoundValue(value)
		if len(got) > codec.MaxValueLen+1+12 {
			t.Fatalf("bound of a %d-byte value is %d bytes", len(value), len(got))
		}
		if len(value) <= codec.MaxValueLen {
			if got != value {
				t.Fatalf("short value %q changed to %q", value, got)
			}
			return
		}
		if len(got) <= codec.MaxValueLen || !strings.HasSuffix(got, "~"+hash12(value)) || !strings.HasPrefix(value, got[:len(got)-13]) {
			t.Fatalf("value of %d bytes gives %q", len(value), got)
		}
		if utf8.ValidString(value) && !utf8.ValidString(got) {
			t.Fatalf("valid UTF-8 %q became invalid %q", value, got)
		}
	})
}

// TestHeaderValuesBounded checks that ids with control characters reach a
// NATS header only percent-encoded, and that a huge id makes bounded
// headers and keys in both bindings.
func TestHeaderValuesBounded(t *testing.T) {
	huge := strings.Repeat("s", 5000)
	tests := []struct {
		name, site string
		wantNATS   string
	}{
		{name: "control characters", site: "a\r\nb\x00", wantNATS: "a%0D%0Ab%00"},
		{name: "huge", site: huge, wantNATS: huge[:256] + "~" + hash12(huge)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			site, err := json.Marshal(tt.site)
			if err != nil {
				t.Fatal(err)
			}
			ev := codec.Map("t", []byte(`{"site_id":`+string(site)+`}`))
			nh, _, err := codec.NATSMessage(context.Background(), &ev, codec.Binary)
			if err != nil {
				t.Fatal(err)
			}
			if got := nh["ce-mistsite"][0]; got != tt.wantNATS {
				t.Errorf("ce-mistsite = %.80q, want %.80q", got, tt.wantNATS)
			}
			for k, vs := range nh {
				for _, v := range vs {
					if strings.ContainsAny(v, "\r\n\x00") || len(v) > 1024 {
						t.Errorf("NATS header %s = %.80q", k, v)
					}
				}
			}
			kh, _, err := codec.KafkaRecord(context.Background(), &ev, codec.Binary)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range kh {
				if len(h.Value) > 1024 {
					t.Errorf("Kafka header %s is %d bytes", h.Key, len(h.Value))
				}
			}
			if len(ev.PartitionKey()) > codec.MaxValueLen+13 {
				t.Errorf("key is %d bytes", len(ev.PartitionKey()))
			}
		})
	}
}

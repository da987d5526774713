package codec

import (
	"math/rand/v2"
	"testing"
)

// natsValue is percentEncode: for every byte at every position of strings
// of up to 20 bytes (every position of the 8-byte words and of the tail),
// over clean surroundings of every printable byte.
func TestNATSValueIsPercentEncode(t *testing.T) {
	for n := 1; n <= 20; n++ {
		for pos := range n {
			for fill := 0x21; fill < 0x7f; fill++ {
				if needsPercent(byte(fill)) {
					continue
				}
				buf := make([]byte, n)
				for i := range buf {
					buf[i] = byte(fill)
				}
				for c := range 256 {
					buf[pos] = byte(c)
					s := string(buf)
					if got, want := natsValue(s), percentEncode(s); got != want {
						t.Fatalf("natsValue(%q) = %q, want %q", s, got, want)
					}
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = byte(0x21 + r.IntN(0x5e))
			if r.IntN(50) == 0 {
				b[i] = byte(r.IntN(256))
			}
		}
		if got, want := natsValue(string(b)), percentEncode(string(b)); got != want {
			t.Fatalf("natsValue(%q) = %q, want %q", b, got, want)
		}
	}
}

// needsPercent8 is exact for every byte value in every lane, next to
// lanes that need no encoding and lanes that do.
func TestNeedsPercent8(t *testing.T) {
	for lane := range 8 {
		for _, fill := range []byte{'a', '0', '~', '!', 0x7f, 0xff, 0x00, ' ', '"', '%', 0x80} {
			for c := range 256 {
				var x uint64
				want := false
				for i := range 8 {
					b := fill
					if i == lane {
						b = byte(c)
					}
					want = want || needsPercent(b)
					x |= uint64(b) << (8 * i)
				}
				if got := needsPercent8(x); got != want {
					t.Fatalf("needsPercent8(%#016x) = %v, want %v", x, got, want)
				}
			}
		}
	}
}

func FuzzNATSValue(f *testing.F) {
	f.Add("2818e386-8dec-2562-9ede-5b8a0fbbdc71")
	f.Add("caf\u00e9 \"x\" 50%")
	f.Add("/mist/orgs/a/sites/b\x7f")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := natsValue(s), percentEncode(s); got != want {
			t.Fatalf("natsValue(%q) = %q, want %q", s, got, want)
		}
	})
}

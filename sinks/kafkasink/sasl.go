package kafkasink

import (
	"context"

	"github.com/segmentio/kafka-go/sasl"
	fsasl "github.com/twmb/franz-go/pkg/sasl"
)

// scramMechanism runs franz-go's SCRAM client in kafka-go's SASL state
// machine. kafka-go's own sasl/scram package needs github.com/xdg-go/scram,
// which the module does not require; franz-go's implementation uses only
// the standard library and is already a dependency. The two interfaces
// differ only in names: Authenticate/Challenge against Start/Next.
type scramMechanism struct{ m fsasl.Mechanism }

func (s scramMechanism) Name() string { return s.m.Name() }

func (s scramMechanism) Start(ctx context.Context) (sasl.StateMachine, []byte, error) {
	host := ""
	if md := sasl.MetadataFromContext(ctx); md != nil {
		host = md.Host
	}
	sess, first, err := s.m.Authenticate(ctx, host)
	if err != nil {
		return nil, nil, err
	}
	return scramSession{sess}, first, nil
}

type scramSession struct{ s fsasl.Session }

func (s scramSession) Next(_ context.Context, challenge []byte) (bool, []byte, error) {
	return s.s.Challenge(challenge)
}

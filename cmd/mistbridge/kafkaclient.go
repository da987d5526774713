package main

import (
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/mistbridge/mistbridge/sinks/kafkasink"
)

// kafkaClientOptions are the franz-go options that reach the brokers of
// cfg as the Kafka sink does: the same brokers, TLS and SASL. The
// operator's commands that read Kafka (tail, deadletter) share them.
func kafkaClientOptions(cfg kafkasink.Config, clientID string) ([]kgo.Opt, error) {
	brokers := make([]string, len(cfg.Brokers))
	for i, b := range cfg.Brokers {
		brokers[i] = strings.TrimSpace(b)
	}
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ClientID(clientID)}
	tlsCfg, err := cfg.TLSConfig()
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsCfg))
	}
	user, pass := cfg.SASLUsername, cfg.SASLPassword
	switch strings.ToUpper(cfg.SASLMechanism) {
	case kafkasink.SASLPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
	case kafkasink.SASLScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()))
	case kafkasink.SASLScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()))
	}
	return opts, nil
}

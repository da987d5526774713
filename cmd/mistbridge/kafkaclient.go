package main

import (
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mistbridge/mistbridge/sinks/kafkasink"
)

// kafkaClientOptions are the franz-go options that reach the brokers of
// cfg as the Kafka sink does: the same brokers, TLS and SASL
// ([kafkasink.Config.ClientOptions]). The operator's commands that read
// Kafka (tail, deadletter) share them.
func kafkaClientOptions(cfg kafkasink.Config, clientID string) ([]kgo.Opt, error) {
	return cfg.ClientOptions(clientID)
}

// Package e2e is the end-to-end suite: the mistbridge binary against a real
// Apache Kafka (KRaft, single node) and a real nats-server with JetStream,
// all on loopback, no Docker.
//
// The tests carry the build tag "e2e", so `go test ./...` skips them. Run
// them with
//
//	bash test/e2e/run.sh
//
// which installs what is missing (Kafka jars from Maven Central through
// test/e2e/pom.xml, kcat from Debian, nats-server through `go install`, all
// cached under ~/.cache/mistbridge-e2e), starts the brokers with
// test/e2e/brokers.sh, runs
//
//	go test -tags e2e -count=1 -v ./test/e2e/ -timeout 15m
//
// stops the brokers whatever happens and prints "N passed, M failed".
//
// `go test -tags e2e ./test/e2e/` alone also works: without E2E_KAFKA and
// E2E_NATS in the environment, TestMain runs `brokers.sh install start`
// itself, with its state in a temporary directory, and stops them at the end.
//
// What the suite proves, each scenario with a bridge process of its own
// (built from ./cmd/mistbridge, or E2E_BRIDGE_BIN):
//
//   - samples: every Mist sample in ../shared/mist-samples (E2E_SAMPLES),
//     posted signed, is one Kafka record on mist.<topic> and one JetStream
//     message on mist.<topic>.<org>.<site>, with the CloudEvents headers, the
//     key (site, else org) on Murmur2's partition, and the event's bytes;
//   - dedup: a batch posted twice keeps its ce ids and JetStream stores it
//     once; an alarm update (same "id", new content) is a new event;
//   - badsig: wrong, missing and downgraded signatures are 401 and publish
//     nothing;
//   - kafka-restart, nats-restart, bridge-sigkill: a sender posts without
//     pause while a broker or the bridge goes down and comes back; every
//     event answered 200 must be on both brokers afterwards ("a 200 is a
//     promise"), errors during the outage are allowed.
package e2e

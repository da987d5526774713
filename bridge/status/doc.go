// Package status is the bridge's status page: GET / serves a page of HTML
// rendered on the server (inline CSS and SVG charts, no script, nothing
// fetched from elsewhere) that reloads itself, and GET /status.json the same
// figures as JSON.
//
// A [Recorder] collects the figures. Most come from the Prometheus registry
// the bridge already fills, read once a second ([Recorder.Run]) into rings
// of per-second values, so the webhook path pays nothing for them: events
// accepted per topic, events acknowledged per sink, the spool's depth, the
// sinks' dead-lettered, failed and retried events. Two calls from the
// webhook path add what the metrics do not hold: [Recorder.Request] (the
// last request of each receiver, and the reason of every refused answer)
// and [Recorder.Events] (the latest few events of each topic, with their
// CloudEvent attributes). Both are cheap: atomic counters, and one short
// lock per topic of a request for the few events kept.
//
// A [Handler] serves the page. With admin tokens configured it requires one:
// "Authorization: Bearer <token>", or a session cookie that a small login
// form sets (a browser cannot send a bearer header by itself). The cookie
// holds an expiry and an HMAC keyed by a token, never the token, so it
// outlives restarts, works on every replica that shares the tokens, and
// dies with the token it was made with. Without tokens the page is open,
// and events' data is not shown.
package status

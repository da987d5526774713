package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mistbridge/mistbridge/bridge/spool"
)

// spoolUsage is printed by `mistbridge spool -h` and on a usage error.
const spoolUsage = `Usage: mistbridge spool status [--data-dir DIR] [--json]

Shows what the spool under DIR/spool holds, per sink: undelivered events,
their bytes, the segment files' size and the age of the oldest event. It
reads without locking or changing anything, so it is safe while the
bridge runs. DIR defaults to MISTBRIDGE_DATA_DIR, else ./data.
`

// spoolCommand runs `mistbridge spool ...` with args (after "spool") and
// returns the exit code: 0 on success, 2 for a usage error, 1 when the
// spool cannot be read.
func spoolCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, spoolUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] != "status" {
		fmt.Fprintf(stderr, "mistbridge spool: unknown subcommand %q\n\n%s", args[0], spoolUsage)
		return 2
	}
	fs := flag.NewFlagSet("mistbridge spool status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, spoolUsage) }
	dataDir := fs.String("data-dir", defaultDataDir(), "the bridge's data directory (MISTBRIDGE_DATA_DIR)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mistbridge spool status: unexpected argument %q\n\n%s", fs.Arg(0), spoolUsage)
		return 2
	}
	st, err := spool.Inspect(filepath.Join(*dataDir, "spool"))
	if err != nil {
		fmt.Fprintf(stderr, "mistbridge spool status: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			fmt.Fprintf(stderr, "mistbridge spool status: %v\n", err)
			return 1
		}
		return 0
	}
	printSpoolStatus(stdout, st)
	return 0
}

// defaultDataDir is MISTBRIDGE_DATA_DIR, else the bridge's default.
func defaultDataDir() string {
	if d := strings.TrimSpace(os.Getenv(envPrefix + "DATA_DIR")); d != "" {
		return d
	}
	return "./data"
}

func printSpoolStatus(w io.Writer, st spool.Status) {
	fmt.Fprintf(w, "spool %s\n", st.Dir)
	if len(st.Sinks) == 0 {
		fmt.Fprintln(w, "empty: no sink has spooled anything")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SINK\tEVENTS\tBYTES\tDISK BYTES\tSEGMENTS\tOLDEST AGE\t")
	for _, s := range st.Sinks {
		age := "-"
		if !s.Oldest.IsZero() {
			age = (time.Duration(s.OldestAgeSeconds * float64(time.Second))).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t\n", s.Sink, s.Events, s.Bytes, s.DiskBytes, s.Segments, age)
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t\t\t\n", st.Events, st.Bytes, st.DiskBytes)
	tw.Flush()
	for _, s := range st.Sinks {
		if s.Unreadable > 0 {
			fmt.Fprintf(w, "%s: %d bytes past the last whole record (a write in progress, or a torn tail the bridge cuts off when it starts)\n", s.Sink, s.Unreadable)
		}
	}
}

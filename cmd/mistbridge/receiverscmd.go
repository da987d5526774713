package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Exit codes of "mistbridge receivers", for scripts.
const (
	exitOK       = 0 // done
	exitAPI      = 1 // the API refused (400, 401, 409, 429, 5xx) or could not be reached
	exitUsage    = 2 // bad command line
	exitNotFound = 3 // no such receiver
)

// getenv is os.Getenv, replaced in tests.
var getenv = os.Getenv

const receiversUsage = `Usage: mistbridge receivers [flags] <command> [arguments]

Manage the bridge's webhook receivers through its API (MISTBRIDGE_ADMIN_TOKEN
must be set on the bridge).

Commands:
  list                              list every receiver
  show    <id|name>                 show one receiver
  create  field=value...            create a receiver (or -f file.json, - for stdin)
  update  <id|name> field=value...  change the fields given (PATCH; or -f file.json)
  delete  <id|name>                 delete a receiver
  enable  <id|name>                 enable a receiver
  disable <id|name>                 disable a receiver (its path answers 404)

Fields are the API's: name, enabled, authType, secret, userName, password,
token, header, queryParam, hmacHeader, hmacAlgorithm, hmacEncoding, hmacPrefix,
jwksUrl, issuer, audience, topics (comma-separated patterns; "topics=" for all).
Example:
  mistbridge receivers create name=splunk-hec authType=splunk token=$HEC_TOKEN

Flags (anywhere on the line):
  --url URL      the bridge [$MISTBRIDGE_API_URL, else http://localhost:8080]
  --token TOKEN  an admin token [$MISTBRIDGE_ADMIN_TOKEN; prefer the variable:
                 a flag shows in the process list]
  --json         print the API's JSON instead of a table
  -f FILE        the receiver as JSON, for create and update ("-" is stdin)

Exit codes: 0 done, 1 the API refused or could not be reached, 2 bad usage,
3 no such receiver.
`

// receiversCommand runs "mistbridge receivers ..." (args without those two
// words) and returns the exit code.
func receiversCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mistbridge receivers", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	apiURL := fs.String("url", "", "")
	token := fs.String("token", "", "")
	asJSON := fs.Bool("json", false, "")
	file := fs.String("f", "", "")
	usage := func(format string, a ...any) int {
		if format != "" {
			fmt.Fprintf(stderr, "mistbridge receivers: "+format+"\n\n", a...)
		}
		fmt.Fprint(stderr, receiversUsage)
		return exitUsage
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, receiversUsage)
			return exitOK
		}
		return usage("%v", err)
	}
	if fs.NArg() == 0 {
		return usage("no command")
	}
	cmd := fs.Arg(0)
	// Flags may come anywhere: between and after the arguments too.
	var rest []string
	for more := fs.Args()[1:]; ; {
		if err := fs.Parse(more); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, receiversUsage)
				return exitOK
			}
			return usage("%v", err)
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		more = fs.Args()[1:]
	}

	c := &apiClient{base: *apiURL, token: *token, http: &http.Client{Timeout: 30 * time.Second}}
	if c.base == "" {
		c.base = getenv("MISTBRIDGE_API_URL")
	}
	if c.base == "" {
		c.base = "http://localhost:8080"
	}
	c.base = strings.TrimRight(c.base, "/")
	if u, err := url.Parse(c.base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usage("--url %q is not an http:// or https:// URL", c.base)
	}
	if c.token == "" {
		// The variable may list several tokens (rotation): any one works.
		c.token, _, _ = strings.Cut(getenv("MISTBRIDGE_ADMIN_TOKEN"), ",")
		c.token = strings.TrimSpace(c.token)
	}
	if c.token == "" {
		return usage("no admin token: set MISTBRIDGE_ADMIN_TOKEN or pass --token")
	}
	out := &printer{w: stdout, json: *asJSON}
	ctx := context.Background()

	switch cmd {
	case "list":
		if len(rest) != 0 {
			return usage("list takes no arguments")
		}
		res, err := c.do(ctx, http.MethodGet, "/api/v1/receivers", nil)
		if err != nil {
			return c.fail(stderr, err)
		}
		return out.list(res)
	case "show", "delete", "enable", "disable":
		if len(rest) != 1 {
			return usage("%s takes one receiver id or name", cmd)
		}
		id, err := c.resolve(ctx, rest[0])
		if err != nil {
			return c.fail(stderr, err)
		}
		var res []byte
		switch cmd {
		case "show":
			res, err = c.do(ctx, http.MethodGet, "/api/v1/receivers/"+url.PathEscape(id), nil)
		case "delete":
			if _, err = c.do(ctx, http.MethodDelete, "/api/v1/receivers/"+url.PathEscape(id), nil); err == nil {
				if !out.json {
					fmt.Fprintf(stdout, "deleted %s\n", rest[0])
				}
				return exitOK
			}
		default:
			res, err = c.do(ctx, http.MethodPatch, "/api/v1/receivers/"+url.PathEscape(id), map[string]any{"enabled": cmd == "enable"})
		}
		if err != nil {
			return c.fail(stderr, err)
		}
		return out.one(res)
	case "create", "update":
		var target string
		if cmd == "update" {
			if len(rest) == 0 {
				return usage("update takes a receiver id or name, then field=value...")
			}
			target, rest = rest[0], rest[1:]
		}
		body, err := receiverBody(*file, rest)
		if err != nil {
			return usage("%v", err)
		}
		if body == nil {
			return usage("%s needs field=value arguments or -f file.json", cmd)
		}
		var res []byte
		if cmd == "create" {
			res, err = c.do(ctx, http.MethodPost, "/api/v1/receivers", body)
		} else {
			var id string
			if id, err = c.resolve(ctx, target); err == nil {
				res, err = c.do(ctx, http.MethodPatch, "/api/v1/receivers/"+url.PathEscape(id), body)
			}
		}
		if err != nil {
			return c.fail(stderr, err)
		}
		return out.one(res)
	}
	return usage("unknown command %q", cmd)
}

// receiverBody builds the request body from -f or field=value arguments;
// nil when there are neither.
func receiverBody(file string, fields []string) (any, error) {
	if file != "" {
		if len(fields) > 0 {
			return nil, errors.New("give -f or field=value arguments, not both")
		}
		var raw []byte
		var err error
		if file == "-" {
			raw, err = io.ReadAll(os.Stdin)
		} else {
			raw, err = os.ReadFile(file)
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		var v map[string]any
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("%s is not a JSON object: %w", file, err)
		}
		return v, nil
	}
	if len(fields) == 0 {
		return nil, nil
	}
	m := map[string]any{}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			// The argument may be a credential typed without its name: do not echo it.
			return nil, errors.New("arguments are field=value (e.g. name=hooks authType=bearer token=...)")
		}
		switch k {
		case "enabled":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("enabled=%q: want true or false", v)
			}
			m[k] = b
		case "topics":
			topics := []string{}
			for _, t := range strings.Split(v, ",") {
				if t = strings.TrimSpace(t); t != "" {
					topics = append(topics, t)
				}
			}
			m[k] = topics
		default:
			m[k] = v
		}
	}
	return m, nil
}

type apiClient struct {
	base, token string
	http        *http.Client
}

// apiError is an answer other than 2xx.
type apiError struct {
	status int
	msg    string
	field  string
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%d %s: %s", e.status, http.StatusText(e.status), e.msg)
	if e.field != "" {
		s += " (field " + e.field + ")"
	}
	return s
}

func (c *apiClient) do(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error, Field string }
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		if resp.StatusCode == http.StatusTooManyRequests {
			e.Error += " (retry after " + resp.Header.Get("Retry-After") + "s)"
		}
		return nil, &apiError{status: resp.StatusCode, msg: e.Error, field: e.Field}
	}
	return raw, nil
}

// resolve returns the id of the receiver named or identified by ref.
func (c *apiClient) resolve(ctx context.Context, ref string) (string, error) {
	raw, err := c.do(ctx, http.MethodGet, "/api/v1/receivers", nil)
	if err != nil {
		return "", err
	}
	var list struct {
		Receivers []struct{ ID, Name string } `json:"receivers"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return "", fmt.Errorf("the list is not JSON: %w", err)
	}
	for _, r := range list.Receivers {
		if r.ID == ref || r.Name == ref {
			return r.ID, nil
		}
	}
	return "", &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no receiver with the id or name %q", ref)}
}

func (c *apiClient) fail(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "mistbridge receivers: %v\n", err)
	var ae *apiError
	if errors.As(err, &ae) && ae.status == http.StatusNotFound {
		return exitNotFound
	}
	return exitAPI
}

type printer struct {
	w    io.Writer
	json bool
}

type shown struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	Enabled       bool     `json:"enabled"`
	AuthType      string   `json:"authType"`
	Secret        string   `json:"secret"`
	UserName      string   `json:"userName"`
	Password      string   `json:"password"`
	Token         string   `json:"token"`
	Header        string   `json:"header"`
	QueryParam    string   `json:"queryParam"`
	HMACHeader    string   `json:"hmacHeader"`
	HMACAlgorithm string   `json:"hmacAlgorithm"`
	HMACEncoding  string   `json:"hmacEncoding"`
	HMACPrefix    string   `json:"hmacPrefix"`
	JWKSURL       string   `json:"jwksUrl"`
	Issuer        string   `json:"issuer"`
	Audience      string   `json:"audience"`
	Topics        []string `json:"topics"`
	URL           string   `json:"url"`
	CreatedTime   int64    `json:"createdTime"`
	ModifiedTime  int64    `json:"modifiedTime"`
}

func topicsText(t []string) string {
	if len(t) == 0 {
		return "*"
	}
	return strings.Join(t, ",")
}

func (p *printer) list(raw []byte) int {
	if p.json {
		p.w.Write(raw)
		return exitOK
	}
	var list struct {
		Receivers []shown `json:"receivers"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		fmt.Fprintf(p.w, "mistbridge receivers: the answer is not JSON: %v\n", err)
		return exitAPI
	}
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tENABLED\tAUTH\tTOPICS\tID\tURL")
	for _, r := range list.Receivers {
		fmt.Fprintf(tw, "%s\t%t\t%s\t%s\t%s\t%s\n", r.Name, r.Enabled, r.AuthType, topicsText(r.Topics), r.ID, r.URL)
	}
	tw.Flush()
	return exitOK
}

func (p *printer) one(raw []byte) int {
	if p.json {
		p.w.Write(raw)
		return exitOK
	}
	var r shown
	if err := json.Unmarshal(raw, &r); err != nil {
		fmt.Fprintf(p.w, "mistbridge receivers: the answer is not JSON: %v\n", err)
		return exitAPI
	}
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("name", r.Name)
	row("id", r.ID)
	row("enabled", strconv.FormatBool(r.Enabled))
	row("authType", r.AuthType)
	row("secret", r.Secret)
	row("userName", r.UserName)
	row("password", r.Password)
	row("token", r.Token)
	row("header", r.Header)
	row("queryParam", r.QueryParam)
	row("hmacHeader", r.HMACHeader)
	row("hmacAlgorithm", r.HMACAlgorithm)
	row("hmacEncoding", r.HMACEncoding)
	row("hmacPrefix", r.HMACPrefix)
	row("jwksUrl", r.JWKSURL)
	row("issuer", r.Issuer)
	row("audience", r.Audience)
	row("topics", topicsText(r.Topics))
	row("url", r.URL)
	row("createdTime", time.Unix(r.CreatedTime, 0).UTC().Format(time.RFC3339))
	row("modifiedTime", time.Unix(r.ModifiedTime, 0).UTC().Format(time.RFC3339))
	tw.Flush()
	return exitOK
}

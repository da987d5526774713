package receivers

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// FileName is the store's file under the data directory.
const FileName = "receivers.db"

// StoreOptions tune a [Store]. The zero value is valid.
type StoreOptions struct {
	// Key, when set, encrypts the credentials at rest with AES-256-GCM: 32
	// bytes (see [ParseKey]). Credentials stored before a key was set are
	// encrypted when the store opens. Without a key they are stored in
	// clear, protected by the file's mode (0600). The default is no key.
	Key []byte
	// Now returns the current time. The default is time.Now.
	Now func() time.Time
}

// ParseKey decodes a base64 (standard or URL alphabet, padded or not)
// AES-256 key. The error never quotes the key.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != 32 {
				return nil, fmt.Errorf("receivers: the key is %d bytes: want 32 (base64 of 32 random bytes, e.g. openssl rand -base64 32)", len(k))
			}
			return k, nil
		}
	}
	return nil, errors.New("receivers: the key is not base64: want 32 random bytes in base64 (e.g. openssl rand -base64 32)")
}

// Store keeps receivers in a SQLite file. It is safe for concurrent use,
// by goroutines and by processes sharing the file (WAL mode, a busy
// timeout, write transactions that take the lock at their start, and a
// unique index on the name). Build it with [Open].
type Store struct {
	db   *sql.DB
	aead cipher.AEAD // nil: credentials in clear
	now  func() time.Time
}

// migrations are applied in order; schema_version holds how many ran.
// Append only: a released migration never changes.
var migrations = []string{
	`CREATE TABLE receivers (
		id            TEXT PRIMARY KEY,
		name          TEXT NOT NULL,
		enabled       INTEGER NOT NULL,
		settings      TEXT NOT NULL,
		credentials   BLOB NOT NULL,
		created_time  INTEGER NOT NULL,
		modified_time INTEGER NOT NULL,
		version       INTEGER NOT NULL
	);
	CREATE UNIQUE INDEX receivers_name ON receivers(name);`,
}

// Open opens (creating it, mode 0600) the store at path and migrates it.
// It fails when the file cannot be opened, a migration fails, the key is
// not 32 bytes, or stored credentials are encrypted and no key is given.
func Open(ctx context.Context, path string, o StoreOptions) (*Store, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("receivers: open %s: %w", path, err)
	}
	_ = f.Close()
	// A file made by someone else's umask, or copied in, is tightened: it
	// may hold credentials.
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, fmt.Errorf("receivers: chmod %s: %w", path, err)
	}
	s := &Store{now: o.Now}
	if s.now == nil {
		s.now = time.Now
	}
	if o.Key != nil {
		if len(o.Key) != 32 {
			return nil, fmt.Errorf("receivers: the key is %d bytes: want 32", len(o.Key))
		}
		block, err := aes.NewCipher(o.Key)
		if err != nil {
			return nil, fmt.Errorf("receivers: key: %w", err)
		}
		if s.aead, err = cipher.NewGCM(block); err != nil {
			return nil, fmt.Errorf("receivers: key: %w", err)
		}
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("receivers: open %s: %w", path, err)
	}
	s.db = db
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.sealAll(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("receivers: close: %w", err)
	}
	return nil
}

func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("receivers: migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("receivers: migrate: %w", err)
	}
	var v int
	switch err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return fmt.Errorf("receivers: migrate: %w", err)
		}
	case err != nil:
		return fmt.Errorf("receivers: migrate: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("receivers: the store is at schema version %d, newer than this binary knows (%d): run the newer version", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("receivers: migration %d: %w", i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, len(migrations)); err != nil {
		return fmt.Errorf("receivers: migrate: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("receivers: migrate: %w", err)
	}
	return nil
}

// settings are the stored non-secret fields.
type settings struct {
	AuthType      string   `json:"authType"`
	UserName      string   `json:"userName,omitempty"`
	Header        string   `json:"header,omitempty"`
	QueryParam    string   `json:"queryParam,omitempty"`
	HMACHeader    string   `json:"hmacHeader,omitempty"`
	HMACAlgorithm string   `json:"hmacAlgorithm,omitempty"`
	HMACEncoding  string   `json:"hmacEncoding,omitempty"`
	HMACPrefix    string   `json:"hmacPrefix,omitempty"`
	JWKSURL       string   `json:"jwksUrl,omitempty"`
	Issuer        string   `json:"issuer,omitempty"`
	Audience      string   `json:"audience,omitempty"`
	Topics        []string `json:"topics,omitempty"`
}

// credentials are the stored secret fields.
type credentials struct {
	Secret   string `json:"secret,omitempty"`
	Password string `json:"password,omitempty"`
	Token    string `json:"token,omitempty"`
}

// The first byte of a stored credentials blob.
const (
	blobPlain  byte = 0
	blobSealed byte = 1 // then a 12-byte nonce and the AES-GCM ciphertext
)

func (s *Store) seal(id string, c credentials) ([]byte, error) {
	plain, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("receivers: encode credentials: %w", err)
	}
	if s.aead == nil {
		return append([]byte{blobPlain}, plain...), nil
	}
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	out[0] = blobSealed
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("receivers: nonce: %w", err)
	}
	// The id is the associated data: a blob moved to another row does not
	// open.
	return s.aead.Seal(out, out[1:1+s.aead.NonceSize()], plain, []byte(id)), nil
}

func (s *Store) open(id string, blob []byte) (credentials, error) {
	var c credentials
	if len(blob) == 0 {
		return c, errors.New("receivers: empty credentials")
	}
	plain := blob[1:]
	switch blob[0] {
	case blobPlain:
	case blobSealed:
		if s.aead == nil {
			return c, errors.New("receivers: the stored credentials are encrypted and the store has no key")
		}
		n := s.aead.NonceSize()
		if len(blob) < 1+n {
			return c, errors.New("receivers: stored credentials are truncated")
		}
		var err error
		if plain, err = s.aead.Open(nil, blob[1:1+n], blob[1+n:], []byte(id)); err != nil {
			return c, errors.New("receivers: the stored credentials do not open with this key")
		}
	default:
		return c, fmt.Errorf("receivers: stored credentials of unknown form %d", blob[0])
	}
	if err := json.Unmarshal(plain, &c); err != nil {
		return c, errors.New("receivers: stored credentials do not decode")
	}
	return c, nil
}

// sealAll encrypts credentials stored in clear when the store has a key,
// and checks that every row opens.
func (s *Store) sealAll(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("receivers: check credentials: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT id, credentials FROM receivers`)
	if err != nil {
		return fmt.Errorf("receivers: check credentials: %w", err)
	}
	type row struct {
		id   string
		blob []byte
	}
	var plain []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.blob); err != nil {
			rows.Close()
			return fmt.Errorf("receivers: check credentials: %w", err)
		}
		if _, err := s.open(r.id, r.blob); err != nil {
			rows.Close()
			return fmt.Errorf("receivers: receiver %s: %w", r.id, err)
		}
		if s.aead != nil && r.blob[0] == blobPlain {
			plain = append(plain, r)
		}
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("receivers: check credentials: %w", err)
	}
	for _, r := range plain {
		c, _ := s.open(r.id, r.blob)
		blob, err := s.seal(r.id, c)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE receivers SET credentials = ? WHERE id = ?`, blob, r.id); err != nil {
			return fmt.Errorf("receivers: encrypt credentials: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("receivers: encrypt credentials: %w", err)
	}
	return nil
}

const columns = `id, name, enabled, settings, credentials, created_time, modified_time, version`

type scanner interface{ Scan(dest ...any) error }

func (s *Store) scan(sc scanner) (Receiver, error) {
	var (
		r        Receiver
		set, blb []byte
	)
	if err := sc.Scan(&r.ID, &r.Name, &r.Enabled, &set, &blb, &r.CreatedTime, &r.ModifiedTime, &r.version); err != nil {
		return r, err
	}
	var st settings
	if err := json.Unmarshal(set, &st); err != nil {
		return r, fmt.Errorf("receivers: receiver %s: settings do not decode: %w", r.ID, err)
	}
	c, err := s.open(r.ID, blb)
	if err != nil {
		return r, fmt.Errorf("receivers: receiver %s: %w", r.ID, err)
	}
	r.AuthType, r.UserName, r.Header, r.QueryParam = st.AuthType, st.UserName, st.Header, st.QueryParam
	r.HMACHeader, r.HMACAlgorithm, r.HMACEncoding, r.HMACPrefix = st.HMACHeader, st.HMACAlgorithm, st.HMACEncoding, st.HMACPrefix
	r.JWKSURL, r.Issuer, r.Audience, r.Topics = st.JWKSURL, st.Issuer, st.Audience, st.Topics
	r.Secret, r.Password, r.Token = c.Secret, c.Password, c.Token
	return r, nil
}

func (s *Store) encode(r *Receiver) ([]byte, []byte, error) {
	set, err := json.Marshal(settings{
		AuthType: r.AuthType, UserName: r.UserName, Header: r.Header, QueryParam: r.QueryParam,
		HMACHeader: r.HMACHeader, HMACAlgorithm: r.HMACAlgorithm, HMACEncoding: r.HMACEncoding, HMACPrefix: r.HMACPrefix,
		JWKSURL: r.JWKSURL, Issuer: r.Issuer, Audience: r.Audience, Topics: r.Topics,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("receivers: encode settings: %w", err)
	}
	blob, err := s.seal(r.ID, credentials{Secret: r.Secret, Password: r.Password, Token: r.Token})
	if err != nil {
		return nil, nil, err
	}
	return set, blob, nil
}

// List returns every stored receiver, by name.
func (s *Store) List(ctx context.Context) ([]Receiver, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+columns+` FROM receivers ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("receivers: list: %w", err)
	}
	defer rows.Close()
	var out []Receiver
	for rows.Next() {
		r, err := s.scan(rows)
		if err != nil {
			return nil, fmt.Errorf("receivers: list: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("receivers: list: %w", err)
	}
	return out, nil
}

// Get returns the receiver with id, or an error wrapping [ErrNotFound].
func (s *Store) Get(ctx context.Context, id string) (Receiver, error) {
	r, err := s.scan(s.db.QueryRowContext(ctx, `SELECT `+columns+` FROM receivers WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("receivers: receiver %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("receivers: get: %w", err)
	}
	return r, nil
}

// Create stores r under a new id with createdTime and modifiedTime now,
// and returns it. It does not validate r (the API does). It returns an
// error wrapping [ErrConflict] when the name is taken.
func (s *Store) Create(ctx context.Context, r Receiver) (Receiver, error) {
	id, err := newID()
	if err != nil {
		return r, err
	}
	r.ID, r.version = id, 1
	r.CreatedTime = s.now().Unix()
	r.ModifiedTime = r.CreatedTime
	set, blob, err := s.encode(&r)
	if err != nil {
		return r, err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO receivers (`+columns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Name, r.Enabled, set, blob, r.CreatedTime, r.ModifiedTime, r.version)
	if isUnique(err) {
		return r, fmt.Errorf("receivers: name %q: %w", r.Name, ErrConflict)
	}
	if err != nil {
		return r, fmt.Errorf("receivers: create: %w", err)
	}
	return r, nil
}

// Update reads the receiver with id, lets change edit it, and stores the
// result, all in one write transaction, so concurrent updates never lose
// one another. The id and createdTime are kept; modifiedTime becomes now.
// It returns an error wrapping [ErrNotFound], [ErrConflict] (the new name
// is taken) or what change returned.
func (s *Store) Update(ctx context.Context, id string, change func(*Receiver) error) (Receiver, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Receiver{}, fmt.Errorf("receivers: update: %w", err)
	}
	defer tx.Rollback()
	old, err := s.scan(tx.QueryRowContext(ctx, `SELECT `+columns+` FROM receivers WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return old, fmt.Errorf("receivers: receiver %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return old, fmt.Errorf("receivers: update: %w", err)
	}
	r := old
	r.Topics = append([]string(nil), old.Topics...)
	if err := change(&r); err != nil {
		return old, err
	}
	r.ID, r.CreatedTime, r.version = old.ID, old.CreatedTime, old.version+1
	r.ModifiedTime = max(s.now().Unix(), old.ModifiedTime)
	set, blob, err := s.encode(&r)
	if err != nil {
		return old, err
	}
	_, err = tx.ExecContext(ctx, `UPDATE receivers SET name = ?, enabled = ?, settings = ?, credentials = ?, modified_time = ?, version = ? WHERE id = ?`,
		r.Name, r.Enabled, set, blob, r.ModifiedTime, r.version, r.ID)
	if isUnique(err) {
		return old, fmt.Errorf("receivers: name %q: %w", r.Name, ErrConflict)
	}
	if err != nil {
		return old, fmt.Errorf("receivers: update: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return old, fmt.Errorf("receivers: update: %w", err)
	}
	return r, nil
}

// Delete removes the receiver with id, or returns an error wrapping
// [ErrNotFound].
func (s *Store) Delete(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM receivers WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("receivers: delete: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("receivers: receiver %q: %w", id, ErrNotFound)
	}
	return nil
}

func isUnique(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

// newID returns a random UUID (version 4).
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("receivers: id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

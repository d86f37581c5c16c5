// cli.go: the operator subcommands of the same binary: migrate, company and user
// administration. They need only the GATEWAY_POSTGRES_* settings.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

const programName = "atenex-api-gateway"

// minOperatorPasswordBytes is the shortest password an operator may set.
const minOperatorPasswordBytes = 8

// migrateTimeout bounds a whole migration; the database's reachability is checked first
// within GATEWAY_DB_TIMEOUT, so an unreachable server still fails fast.
const migrateTimeout = 30 * time.Second

const passwordSources = `Passwords are read from the first line of standard input, or from the environment variable
named by -password-env; never from the command line, which the shell history and the process
list would keep. A password must be 8 to 1024 bytes; bcrypt uses only its first 72 bytes.`

const databaseSettings = `Database settings come from GATEWAY_POSTGRES_USER, _PASSWORD, _SERVER, _PORT and _DB
(an optional .env file is read too); GATEWAY_DB_TIMEOUT bounds every database call.
Exit codes: 0 success, 1 operation failed, 2 invalid usage or configuration.
`

// operatorArgs holds every flag value; each command defines only the flags it uses.
type operatorArgs struct {
	name, email, role, company, passwordEnv string
}

// operatorCommand is one subcommand: its flags, the checks that need no database, and
// what it does.
type operatorCommand struct {
	name     string // as typed: "user create"
	synopsis string // its flags, as the usage line shows them
	summary  string // one line for the command list
	details  string // more for `COMMAND -h`; may be empty
	password bool   // reads a new password (adds -password-env)
	flags    func(fs *flag.FlagSet, a *operatorArgs)
	check    func(a *operatorArgs) error // usage errors, before any configuration or database work
	run      func(ctx context.Context, op *operation) error
}

// operation is one command being carried out, after its usage checks passed.
type operation struct {
	name     string
	args     operatorArgs
	cfg      *Config
	store    *pgStore
	password string // the validated new password, for commands that take one
	stdout   io.Writer
}

var operatorCommands = []*operatorCommand{
	{
		name:    "migrate",
		summary: "Apply the embedded schema.sql (idempotent: safe to run on every deploy).",
		run:     runMigrate,
	},
	{
		name:     "company create",
		synopsis: "-name NAME",
		summary:  "Create an active company and print its id.",
		flags: func(fs *flag.FlagSet, a *operatorArgs) {
			fs.StringVar(&a.name, "name", "", "the company's `NAME` (required)")
		},
		check: func(a *operatorArgs) error {
			a.name = strings.TrimSpace(a.name)
			if a.name == "" {
				return errors.New("-name is required")
			}
			return nil
		},
		run: runCompanyCreate,
	},
	{
		name:     "user create",
		synopsis: "-email EMAIL [-name FULL_NAME] [-role ROLE] [-company COMPANY_ID] [-password-env VAR]",
		summary:  "Create an active user with a bcrypt (cost 12) password hash and print its id.",
		details:  "Emails are unique ignoring letter case, as the login compares them.",
		password: true,
		flags: func(fs *flag.FlagSet, a *operatorArgs) {
			fs.StringVar(&a.email, "email", "", "the user's `EMAIL` (required)")
			fs.StringVar(&a.name, "name", "", "the user's `FULL_NAME`")
			fs.StringVar(&a.role, "role", "user", "the user's `ROLE`")
			fs.StringVar(&a.company, "company", "", "`UUID` of the company the user belongs to (printed by company create)")
		},
		check: func(a *operatorArgs) error {
			if err := checkEmail(a); err != nil {
				return err
			}
			a.name, a.role = strings.TrimSpace(a.name), strings.TrimSpace(a.role)
			if a.role == "" {
				return errors.New("-role must not be empty")
			}
			if a.company != "" && !isUUID(a.company) {
				return fmt.Errorf("-company %q is not a UUID (e.g. 0f8fad5b-d9cb-469f-a165-70867728950e)", a.company)
			}
			a.company = strings.ToLower(a.company)
			return nil
		},
		run: runUserCreate,
	},
	{
		name:     "user set-password",
		synopsis: "-email EMAIL [-password-env VAR]",
		summary:  "Replace a user's password (bcrypt, cost 12).",
		password: true,
		flags:    emailFlag,
		check:    checkEmail,
		run:      runUserSetPassword,
	},
	{
		name:     "user activate",
		synopsis: "-email EMAIL",
		summary:  "Allow a user to log in and use their tokens again.",
		flags:    emailFlag,
		check:    checkEmail,
		run:      runUserSetActive(true),
	},
	{
		name:     "user deactivate",
		synopsis: "-email EMAIL",
		summary:  "Refuse a user's logins and tokens.",
		details:  "Running gateways notice within GATEWAY_USER_CACHE_TTL (default 5s).",
		flags:    emailFlag,
		check:    checkEmail,
		run:      runUserSetActive(false),
	},
}

func emailFlag(fs *flag.FlagSet, a *operatorArgs) {
	fs.StringVar(&a.email, "email", "", "the user's `EMAIL`, in any letter case (required)")
}

func checkEmail(a *operatorArgs) error {
	if a.email == "" {
		return errors.New("-email is required")
	}
	if !validEmail(a.email) {
		return fmt.Errorf("-email %q is not a valid email address", a.email)
	}
	return nil
}

// cliUsage lists every command, or only those of group ("user") when group is not "";
// `COMMAND -h` describes one.
func cliUsage(group string) string {
	var b strings.Builder
	b.WriteString("Usage:\n")
	if group == "" {
		fmt.Fprintf(&b, "  %s [-dev]\n\tRun the gateway (-dev: a demo set-up needing nothing else).\n", programName)
	}
	for _, c := range operatorCommands {
		if g, _, _ := strings.Cut(c.name, " "); group == "" || g == group {
			fmt.Fprintf(&b, "  %s\n\t%s\n", strings.TrimSpace(programName+" "+c.name+" "+c.synopsis), c.summary)
		}
	}
	fmt.Fprintf(&b, "  %s help [COMMAND]\n\tDescribe one command and its flags (same as COMMAND -h).\n\n", programName)
	b.WriteString(passwordSources + "\n")
	b.WriteString(databaseSettings)
	return b.String()
}

func isHelpArg(s string) bool {
	switch s {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

func isSubcommand(name string) bool {
	if isHelpArg(name) {
		return true
	}
	for _, c := range operatorCommands {
		if group, _, _ := strings.Cut(c.name, " "); group == name {
			return true
		}
	}
	return false
}

// commandGroup is the actions of a group ("user": create, set-password, …).
func commandGroup(group string) (actions []string) {
	for _, c := range operatorCommands {
		if g, action, ok := strings.Cut(c.name, " "); ok && g == group {
			actions = append(actions, action)
		}
	}
	return actions
}

// findCommand splits args into the command and its flags. help is true when args ask
// for a group's list of actions instead.
func findCommand(args []string) (cmd *operatorCommand, rest []string, help bool, err error) {
	name, rest := args[0], args[1:]
	if actions := commandGroup(name); len(actions) > 0 {
		if len(rest) == 0 {
			return nil, nil, false, fmt.Errorf("%s: missing action: one of %s", name, strings.Join(actions, ", "))
		}
		if isHelpArg(rest[0]) {
			return nil, nil, true, nil
		}
		name, rest = name+" "+rest[0], rest[1:]
	}
	for _, c := range operatorCommands {
		if c.name == name {
			return c, rest, false, nil
		}
	}
	if group, _, _ := strings.Cut(name, " "); len(commandGroup(group)) > 0 {
		return nil, nil, false, fmt.Errorf("unknown command %q: %s actions are %s", name, group, strings.Join(commandGroup(group), ", "))
	}
	return nil, nil, false, fmt.Errorf("unknown command %q", name)
}

func (c *operatorCommand) flagSet(a *operatorArgs) *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // a parse error is returned, and main prints it once
	if c.flags != nil {
		c.flags(fs, a)
	}
	if c.password {
		fs.StringVar(&a.passwordEnv, "password-env", "", "read the password from the environment variable `VAR` instead of standard input")
	}
	return fs
}

func (c *operatorCommand) printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", strings.TrimSpace(programName+" "+c.name+" "+c.synopsis), c.summary)
	if c.details != "" {
		fmt.Fprintln(w, c.details)
	}
	fs := c.flagSet(&operatorArgs{})
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	if c.password {
		fmt.Fprintf(w, "\n%s\n", passwordSources)
	}
	fmt.Fprintf(w, "\n%s", databaseSettings)
}

// refusePasswordFlag names the mistake of passing a password as an argument, without
// repeating its value in the error.
func refusePasswordFlag(c *operatorCommand, args []string) error {
	for _, arg := range args {
		if arg == "--" {
			return nil
		}
		name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if !strings.HasPrefix(arg, "-") || !strings.EqualFold(name, "password") && !strings.EqualFold(name, "pass") {
			continue
		}
		if !c.password {
			return fmt.Errorf("%s takes no password", c.name)
		}
		return errors.New("there is no -password flag: passwords are never taken from the command line " +
			"(the shell history and the process list would keep them); pipe it on standard input " +
			"or name an environment variable with -password-env VAR")
	}
	return nil
}

// runSubcommand runs one operator command and prints its result on stdout.
func runSubcommand(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if isHelpArg(args[0]) {
		if args[0] != "help" || len(args) == 1 {
			fmt.Fprint(stdout, cliUsage(""))
			return nil
		}
		if len(args) == 2 && len(commandGroup(args[1])) > 0 {
			fmt.Fprint(stdout, cliUsage(args[1]))
			return nil
		}
		cmd, _, groupHelp, err := findCommand(args[1:])
		switch {
		case err != nil:
			return usageError(fmt.Errorf("help: %w", err))
		case groupHelp:
			fmt.Fprint(stdout, cliUsage(args[1]))
		default:
			cmd.printUsage(stdout)
		}
		return nil
	}
	cmd, rest, groupHelp, err := findCommand(args)
	if err != nil {
		return usageError(fmt.Errorf("%w (run `%s help`)", err, programName))
	}
	if groupHelp {
		fmt.Fprint(stdout, cliUsage(args[0]))
		return nil
	}

	var a operatorArgs
	fs := cmd.flagSet(&a)
	if err := refusePasswordFlag(cmd, rest); err != nil {
		return usageError(fmt.Errorf("%s: %w", cmd.name, err))
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			cmd.printUsage(stdout)
			return nil
		}
		return usageError(fmt.Errorf("%s: %w (run `%s %s -h`)", cmd.name, err, programName, cmd.name))
	}
	if fs.NArg() > 0 {
		if cmd.password { // the stray argument may well be a password: do not print it
			return usageError(fmt.Errorf("%s: unexpected argument after the flags (quote values that contain spaces; passwords are read from standard input or -password-env VAR, never from arguments)", cmd.name))
		}
		return usageError(fmt.Errorf("%s: unexpected argument %q (run `%s %s -h`)", cmd.name, fs.Arg(0), programName, cmd.name))
	}
	if cmd.check != nil {
		if err := cmd.check(&a); err != nil {
			return usageError(fmt.Errorf("%s: %w", cmd.name, err))
		}
	}

	cfg, err := loadDatabaseConfig(getenv)
	if err != nil {
		return usageError(fmt.Errorf("%s: invalid configuration:\n%w", cmd.name, err))
	}
	op := &operation{name: cmd.name, args: a, cfg: cfg, stdout: stdout}
	if cmd.password {
		// Before any database work, so a mistake here costs nothing.
		if op.password, err = readPassword(ctx, stdin, stderr, getenv, a.passwordEnv); err != nil {
			return fmt.Errorf("%s: %w", cmd.name, err)
		}
	}
	store, err := openPostgres(ctx, postgresConnString(cfg), cfg.DBTimeout)
	if err != nil {
		return usageError(fmt.Errorf("%s: invalid database settings: %w", cmd.name, err))
	}
	defer store.Close()
	op.store = store
	return cmd.run(ctx, op)
}

func runMigrate(ctx context.Context, op *operation) error {
	// migrate's own deadline must leave room for a slow schema change, so first make
	// sure, within GATEWAY_DB_TIMEOUT, that the server answers at all.
	if err := op.store.Ping(ctx); err != nil {
		return op.failure(ctx, err)
	}
	if err := migrate(ctx, postgresConnString(op.cfg), max(migrateTimeout, op.cfg.DBTimeout)); err != nil {
		return err // already says "migrate: …"
	}
	fmt.Fprintf(op.stdout, "schema applied to database %s\n", op.cfg.PostgresDB)
	return nil
}

func runCompanyCreate(ctx context.Context, op *operation) error {
	c, err := op.store.CreateCompany(ctx, op.args.name)
	if err != nil {
		return op.failure(ctx, err)
	}
	fmt.Fprintln(op.stdout, c.ID)
	return nil
}

func runUserCreate(ctx context.Context, op *operation) error {
	a := op.args
	// Checked before the slow hash; CreateUser still refuses a duplicate created meanwhile.
	if u, err := op.store.UserByEmail(ctx, a.email); err == nil {
		return op.duplicate(u.Email)
	} else if !errors.Is(err, errNotFound) {
		return op.failure(ctx, err)
	}
	hash, err := op.hashPassword(ctx)
	if err != nil {
		return err
	}
	u, err := op.store.CreateUser(ctx, NewUser{Email: a.email, HashedPassword: hash, FullName: a.name, Role: a.role, CompanyID: a.company})
	switch {
	case errors.Is(err, errDuplicate):
		return op.duplicate(a.email)
	case errors.Is(err, errNotFound): // the only row CreateUser looks up is the company
		return fmt.Errorf("%s: no company with id %s (create one with `%s company create -name NAME`): %w",
			op.name, a.company, programName, errNotFound)
	case err != nil:
		return op.failure(ctx, err)
	}
	fmt.Fprintln(op.stdout, u.ID)
	return nil
}

func runUserSetPassword(ctx context.Context, op *operation) error {
	// An unknown email fails before the slow hash.
	if _, err := op.store.UserByEmail(ctx, op.args.email); err != nil {
		return op.userFailure(ctx, err)
	}
	hash, err := op.hashPassword(ctx)
	if err != nil {
		return err
	}
	if err := op.store.SetPassword(ctx, op.args.email, hash); err != nil {
		return op.userFailure(ctx, err)
	}
	fmt.Fprintf(op.stdout, "password of %s updated\n", op.args.email)
	return nil
}

func runUserSetActive(active bool) func(ctx context.Context, op *operation) error {
	return func(ctx context.Context, op *operation) error {
		if err := op.store.SetActive(ctx, op.args.email, active); err != nil {
			return op.userFailure(ctx, err)
		}
		state := "deactivated"
		if active {
			state = "activated"
		}
		fmt.Fprintf(op.stdout, "%s %s\n", op.args.email, state)
		return nil
	}
}

func (op *operation) hashPassword(ctx context.Context) (string, error) {
	pool := newHashPool(1, time.Minute)
	defer pool.close()
	hash, err := pool.hash(ctx, op.password)
	if err != nil {
		return "", fmt.Errorf("%s: hash password: %w", op.name, err)
	}
	return hash, nil
}

func (op *operation) duplicate(email string) error {
	return fmt.Errorf("%s: a user with email %s already exists (emails match ignoring letter case): %w", op.name, email, errDuplicate)
}

// userFailure explains a failed lookup or update of the user named by -email.
func (op *operation) userFailure(ctx context.Context, err error) error {
	if errors.Is(err, errNotFound) {
		return fmt.Errorf("%s: no user with email %s: %w", op.name, op.args.email, errNotFound)
	}
	return op.failure(ctx, err)
}

// failure explains a store error that is not about a missing row: the command was
// interrupted, the schema is missing, the server refused, or it could not be reached.
func (op *operation) failure(ctx context.Context, err error) error {
	var pgErr *pgconn.PgError
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%s: interrupted: %w", op.name, err)
	case isPgCode(err, "42P01"): // undefined_table
		return fmt.Errorf("%s: database %s has no gateway tables; run `%s migrate` first: %w", op.name, op.cfg.PostgresDB, programName, err)
	case errors.As(err, &pgErr):
		return fmt.Errorf("%s: database %s refused: %w", op.name, op.cfg.PostgresDB, err)
	default:
		return fmt.Errorf("%s: database %s at %s:%d unavailable (is PostgreSQL running, and are GATEWAY_POSTGRES_* right?): %w",
			op.name, op.cfg.PostgresDB, op.cfg.PostgresServer, op.cfg.PostgresPort, err)
	}
}

// readPassword returns the new password from the environment variable envName, or else
// from the first line of stdin without its line ending. A password that breaks the rules
// is a usage error. The wait for stdin ends with ctx: main's context, not the default
// handler, receives Ctrl-C.
func readPassword(ctx context.Context, stdin io.Reader, stderr io.Writer, getenv func(string) string, envName string) (string, error) {
	var password string
	if envName != "" {
		password = getenv(envName)
		if password == "" {
			return "", usageError(fmt.Errorf("environment variable %s (named by -password-env) is empty or unset", envName))
		}
	} else {
		if isTerminal(stdin) {
			fmt.Fprint(stderr, "New password (shown as typed; end with Enter): ")
		}
		line, err := readLine(ctx, stdin, maxPasswordBytes+2) // room for "\r\n"
		if err != nil {
			return "", err
		}
		password = line
		if password == "" {
			return "", usageError(errors.New("no password on standard input: pipe it in (its first line is used) or name an environment variable with -password-env VAR"))
		}
	}
	switch {
	case len(password) < minOperatorPasswordBytes:
		return "", usageError(fmt.Errorf("password too short: %d bytes, at least %d needed", len(password), minOperatorPasswordBytes))
	case len(password) > maxPasswordBytes:
		return "", usageError(fmt.Errorf("password too long: more than %d bytes", maxPasswordBytes))
	case strings.IndexByte(password, 0) >= 0:
		return "", usageError(errors.New("password contains a NUL byte, which bcrypt implementations disagree on"))
	}
	if len(password) > bcryptMaxPassword {
		fmt.Fprintf(stderr, "note: bcrypt uses only the first %d bytes of the password\n", bcryptMaxPassword)
	}
	return password, nil
}

// readLine reads at most limit bytes of r up to and without a "\n" or "\r\n", giving up
// when ctx ends; the reading goroutine then stays blocked until r has data or closes.
func readLine(ctx context.Context, r io.Reader, limit int64) (string, error) {
	type result struct {
		line string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(io.LimitReader(r, limit)).ReadString('\n')
		done <- result{line, err}
	}()
	select {
	case res := <-done:
		if res.err != nil && !errors.Is(res.err, io.EOF) {
			return "", fmt.Errorf("read password from standard input: %w", res.err)
		}
		return strings.TrimSuffix(strings.TrimSuffix(res.line, "\n"), "\r"), nil
	case <-ctx.Done():
		return "", fmt.Errorf("interrupted while waiting for the password: %w", ctx.Err())
	}
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

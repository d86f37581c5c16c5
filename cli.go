// cli.go: the operator subcommands of the same binary: migrate, company, user, invitation
// and email-domain administration. They need only the GATEWAY_POSTGRES_* settings.
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
	id, domain                              string
	days                                    int
}

// Invitations last -days days: a week unless told, at most a year, so that a forgotten one
// does not stay usable for ever.
const (
	defaultInvitationDays = 7
	maxInvitationDays     = 365
)

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
		run: func(ctx context.Context, op *operation) error {
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
		},
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
		run: func(ctx context.Context, op *operation) error {
			c, err := op.store.CreateCompany(ctx, op.args.name)
			if err != nil {
				return op.failure(ctx, err)
			}
			fmt.Fprintln(op.stdout, c.ID)
			return nil
		},
	},
	{
		name:     "company activate",
		synopsis: "-id UUID",
		summary:  "Let the users of a company log in and use their tokens again.",
		details:  "Running gateways are told within a second.",
		flags:    idFlag("the company's `UUID` (required; printed by company create)"),
		check:    checkID,
		run:      runCompanySetActive(true),
	},
	{
		name:     "company deactivate",
		synopsis: "-id UUID",
		summary:  "Refuse the logins and tokens of every user of a company.",
		details: "Running gateways are told within a second and answer 403 company_inactive. No token is\n" +
			"revoked: `company activate` restores access as it was.",
		flags: idFlag("the company's `UUID` (required; printed by company create)"),
		check: checkID,
		run:   runCompanySetActive(false),
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
		check: checks(checkEmail, func(a *operatorArgs) error {
			a.name, a.role = strings.TrimSpace(a.name), strings.TrimSpace(a.role)
			if a.role == "" {
				return errors.New("-role must not be empty")
			}
			if a.company != "" && !isUUID(a.company) {
				return fmt.Errorf("-company %q is not a UUID (e.g. 0f8fad5b-d9cb-469f-a165-70867728950e)", a.company)
			}
			a.company = strings.ToLower(a.company)
			return nil
		}),
		run: func(ctx context.Context, op *operation) error {
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
		},
	},
	{
		name:     "user set-password",
		synopsis: "-email EMAIL [-password-env VAR]",
		summary:  "Replace a user's password (bcrypt, cost 12).",
		details: "Every token the user holds is revoked (signed out everywhere); running gateways are told\n" +
			"within a second.",
		password: true,
		flags:    emailFlag,
		check:    checkEmail,
		run: func(ctx context.Context, op *operation) error {
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
		},
	},
	{
		name:     "user activate",
		synopsis: "-email EMAIL",
		summary:  "Allow a user to log in again (tokens revoked by the deactivation stay revoked).",
		flags:    emailFlag,
		check:    checkEmail,
		run:      runUserSetActive(true),
	},
	{
		name:     "user deactivate",
		synopsis: "-email EMAIL",
		summary:  "Refuse a user's logins and tokens.",
		details: "Running gateways are told within a second, and the user's tokens are revoked: activating\n" +
			"the user again does not bring them back. A gateway whose database notifications are down\n" +
			"notices within GATEWAY_USER_CACHE_TTL.",
		flags: emailFlag,
		check: checkEmail,
		run:   runUserSetActive(false),
	},
	{
		name:     "user revoke-sessions",
		synopsis: "-email EMAIL",
		summary:  "Revoke every token a user holds now (sign out everywhere).",
		details: "Running gateways are told within a second. The user may sign in again at once: a token\n" +
			"issued later, even within the same second, stays valid.",
		flags: emailFlag,
		check: checkEmail,
		run: func(ctx context.Context, op *operation) error {
			u, err := op.store.UserByEmail(ctx, op.args.email)
			if err != nil {
				return op.userFailure(ctx, err)
			}
			at, err := op.store.RevokeSessions(ctx, u.ID)
			if err != nil {
				return op.userFailure(ctx, err)
			}
			fmt.Fprintf(op.stdout, "sessions of %s revoked: tokens issued before %s are refused\n", op.args.email, at.UTC().Format(time.RFC3339))
			return nil
		},
	},
	{
		name:     "invite create",
		synopsis: "-company UUID -email EMAIL [-role user|admin] [-days N]",
		summary:  "Invite an email address into a company and print the invitation's id.",
		details: "The user with that email (any letter case) joins the company with the invitation's role at\n" +
			"their next login when they have no company yet, or when they ask to join it. An invitation\n" +
			"is used once; it is not open while the company is inactive.",
		flags: func(fs *flag.FlagSet, a *operatorArgs) {
			companyFlag(fs, a)
			fs.StringVar(&a.email, "email", "", "the invited `EMAIL` (required)")
			fs.StringVar(&a.role, "role", "user", "the `ROLE` the user gets on joining: user or admin")
			fs.IntVar(&a.days, "days", defaultInvitationDays, fmt.Sprintf("the invitation expires after `N` days (1 to %d)", maxInvitationDays))
		},
		check: checks(checkCompany, checkEmail, func(a *operatorArgs) error {
			if !knownRole(a.role) {
				return fmt.Errorf("-role %q must be user or admin", a.role)
			}
			if a.days < 1 || a.days > maxInvitationDays {
				return fmt.Errorf("-days %d must be between 1 and %d", a.days, maxInvitationDays)
			}
			return nil
		}),
		run: func(ctx context.Context, op *operation) error {
			a := op.args
			inv, err := op.store.CreateInvitation(ctx, Invitation{CompanyID: a.company, Email: a.email, Role: a.role,
				ExpiresAt: time.Now().Add(time.Duration(a.days) * 24 * time.Hour)})
			if err != nil {
				return op.companyFailure(ctx, a.company, err)
			}
			fmt.Fprintln(op.stdout, inv.ID)
			return nil
		},
	},
	{
		name:     "invite list",
		synopsis: "-company UUID",
		summary:  "List a company's open invitations, newest first: id, email, role, expiry (RFC 3339).",
		details:  "One line per invitation, fields separated by tabs; nothing when there is none.",
		flags:    companyFlag,
		check:    checkCompany,
		run: func(ctx context.Context, op *operation) error {
			invs, err := op.store.ListOpenInvitations(ctx, op.args.company)
			if err != nil {
				return op.companyFailure(ctx, op.args.company, err)
			}
			for _, inv := range invs {
				fmt.Fprintf(op.stdout, "%s\t%s\t%s\t%s\n", inv.ID, inv.Email, inv.Role, inv.ExpiresAt.UTC().Format(time.RFC3339))
			}
			return nil
		},
	},
	{
		name:     "invite revoke",
		synopsis: "-company UUID -id UUID",
		summary:  "Revoke an open invitation of a company.",
		flags: func(fs *flag.FlagSet, a *operatorArgs) {
			companyFlag(fs, a)
			idFlag("the invitation's `UUID` (required; printed by invite create and invite list)")(fs, a)
		},
		check: checks(checkCompany, checkID),
		run: func(ctx context.Context, op *operation) error {
			a := op.args
			err := op.store.RevokeInvitation(ctx, a.company, a.id)
			if errors.Is(err, errNotFound) {
				return fmt.Errorf("%s: no open invitation %s in company %s (accepted, revoked and expired ones cannot be revoked; "+
					"`%s invite list -company %s` shows the open ones): %w", op.name, a.id, a.company, programName, a.company, err)
			}
			if err != nil {
				return op.failure(ctx, err)
			}
			fmt.Fprintf(op.stdout, "invitation %s revoked\n", a.id)
			return nil
		},
	},
	{
		name:     "domain add",
		synopsis: "-company UUID -domain DOMAIN",
		summary:  "Register an email domain for a company: its users without a company join it at login.",
		details: "A domain belongs to one company at most; adding it again to the same company changes\n" +
			"nothing. Domains are stored in lower case; a leading '@' is ignored.",
		flags: domainFlags,
		check: checks(checkCompany, checkDomain),
		run: func(ctx context.Context, op *operation) error {
			a := op.args
			err := op.store.AddDomain(ctx, a.domain, a.company)
			if errors.Is(err, errDuplicate) {
				return fmt.Errorf("%s: %s belongs to another company; remove it there first with `%s domain remove`: %w",
					op.name, a.domain, programName, err)
			}
			if err != nil {
				return op.companyFailure(ctx, a.company, err)
			}
			fmt.Fprintf(op.stdout, "domain %s registered for company %s\n", a.domain, a.company)
			return nil
		},
	},
	{
		name:     "domain remove",
		synopsis: "-company UUID -domain DOMAIN",
		summary:  "Unregister an email domain of a company (users who joined through it stay).",
		flags:    domainFlags,
		check:    checks(checkCompany, checkDomain),
		run: func(ctx context.Context, op *operation) error {
			a := op.args
			err := op.store.RemoveDomain(ctx, a.domain, a.company)
			if errors.Is(err, errNotFound) {
				return fmt.Errorf("%s: company %s has no domain %s: %w", op.name, a.company, a.domain, err)
			}
			if err != nil {
				return op.failure(ctx, err)
			}
			fmt.Fprintf(op.stdout, "domain %s removed from company %s\n", a.domain, a.company)
			return nil
		},
	},
}

func idFlag(usage string) func(fs *flag.FlagSet, a *operatorArgs) {
	return func(fs *flag.FlagSet, a *operatorArgs) { fs.StringVar(&a.id, "id", "", usage) }
}

func companyFlag(fs *flag.FlagSet, a *operatorArgs) {
	fs.StringVar(&a.company, "company", "", "the company's `UUID` (required; printed by company create)")
}

func domainFlags(fs *flag.FlagSet, a *operatorArgs) {
	companyFlag(fs, a)
	fs.StringVar(&a.domain, "domain", "", "the email `DOMAIN`, e.g. example.com (required)")
}

// checkUUIDFlag validates a required UUID flag and returns it in lower case, as stored.
func checkUUIDFlag(name, value string) (string, error) {
	if value == "" {
		return "", fmt.Errorf("-%s is required", name)
	}
	if !isUUID(value) {
		return "", fmt.Errorf("-%s %q is not a UUID (e.g. 0f8fad5b-d9cb-469f-a165-70867728950e)", name, value)
	}
	return strings.ToLower(value), nil
}

func checkID(a *operatorArgs) (err error) {
	a.id, err = checkUUIDFlag("id", a.id)
	return err
}

func checkCompany(a *operatorArgs) (err error) {
	a.company, err = checkUUIDFlag("company", a.company)
	return err
}

// checks runs each check in turn, up to the first that fails.
func checks(each ...func(a *operatorArgs) error) func(a *operatorArgs) error {
	return func(a *operatorArgs) error {
		for _, check := range each {
			if err := check(a); err != nil {
				return err
			}
		}
		return nil
	}
}

func checkDomain(a *operatorArgs) error {
	if a.domain == "" {
		return errors.New("-domain is required")
	}
	d, ok := normalizeDomain(a.domain)
	if !ok {
		return fmt.Errorf("-domain %q is not a domain name like example.com (letters, digits and hyphens in "+
			"dot-separated labels; internationalised names in their xn-- form)", a.domain)
	}
	a.domain = d
	return nil
}

// normalizeDomain returns s as company_domains stores it, lower case, or false when it is
// not a domain name: dot-separated labels of 1 to 63 letters, digits and inner hyphens, at
// least two labels, 253 bytes at most. One leading '@' is dropped, since people paste the
// end of an address.
func normalizeDomain(s string) (string, bool) {
	d := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(s), "@"))
	if len(d) > 253 {
		return "", false
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return "", false
	}
	for _, label := range labels {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return "", false
			}
		}
	}
	return d, true
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

func runUserSetActive(active bool) func(ctx context.Context, op *operation) error {
	return func(ctx context.Context, op *operation) error {
		if err := op.store.SetActive(ctx, op.args.email, active); err != nil {
			return op.userFailure(ctx, err)
		}
		fmt.Fprintf(op.stdout, "%s %s\n", op.args.email, activatedWord(active))
		return nil
	}
}

func runCompanySetActive(active bool) func(ctx context.Context, op *operation) error {
	return func(ctx context.Context, op *operation) error {
		if err := op.store.SetCompanyActive(ctx, op.args.id, active); err != nil {
			return op.companyFailure(ctx, op.args.id, err)
		}
		fmt.Fprintf(op.stdout, "company %s %s\n", op.args.id, activatedWord(active))
		return nil
	}
}

func activatedWord(active bool) string {
	if active {
		return "activated"
	}
	return "deactivated"
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

// companyFailure explains a failed command on the company named by id.
func (op *operation) companyFailure(ctx context.Context, id string, err error) error {
	if errors.Is(err, errNotFound) {
		return fmt.Errorf("%s: no company with id %s (`%s company create -name NAME` prints the id of a new one): %w",
			op.name, id, programName, errNotFound)
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
	case errors.Is(err, errInvalidInput): // the usage checks should have caught it
		return usageError(fmt.Errorf("%s: %w", op.name, err))
	case isPgCode(err, "42P01"), isPgCode(err, "42703"): // undefined_table, undefined_column
		return fmt.Errorf("%s: database %s lacks the gateway's tables or columns; run `%s migrate` first: %w", op.name, op.cfg.PostgresDB, programName, err)
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

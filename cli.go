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
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

const (
	programName              = "atenex-api-gateway"
	minOperatorPasswordBytes = 8 // the shortest password an operator may set
	// migrateTimeout bounds a whole migration; migrate checks reachability first, so an
	// unreachable server still fails fast.
	migrateTimeout = 30 * time.Second
	// At most a year, so that a forgotten invitation does not stay usable for ever.
	defaultInvitationDays = 7
	maxInvitationDays     = 365
	companyUUIDUsage      = "the company's `UUID` (required; printed by company create)"
)

const passwordSources = `Passwords are read from the first line of standard input, or from the environment variable
named by -password-env; never from the command line, which the shell history and the process
list would keep. A password must be 8 to 1024 bytes; bcrypt uses only its first 72 bytes.`

const databaseSettings = `Database settings come from GATEWAY_POSTGRES_USER, _PASSWORD, _SERVER, _PORT and _DB
(an optional .env file is read too); GATEWAY_DB_TIMEOUT bounds every database call.
Exit codes: 0 success, 1 operation failed, 2 invalid usage or configuration.
`

// operatorArgs holds every flag value; each command defines only the flags it uses.
type operatorArgs struct {
	name, email, role, company, passwordEnv, id, domain string
	days                                                int
}

// operatorCommand is one subcommand: its flags, with the checks that need no database, and its run.
type operatorCommand struct {
	name     string // as typed: "user create"
	synopsis string // its flags, as the usage line shows them
	summary  string // one line for the command list
	details  string // more for `COMMAND -h`; may be empty
	password bool   // reads a new password (adds -password-env)
	flags    func(f *cmdFlags, a *operatorArgs)
	// run returns what to print, or an error: a store error for fail to explain, or its own from errorf.
	run     func(ctx context.Context, op *operation) (string, error)
	missing func(a *operatorArgs) string // the row errNotFound from the store stands for
}

type operation struct {
	*operatorCommand
	args     operatorArgs
	cfg      *Config
	store    *pgStore
	password string // the validated new password, for commands that take one
}

var operatorCommands = []*operatorCommand{
	{
		name:    "migrate",
		summary: "Apply the embedded schema.sql (idempotent: safe to run on every deploy).",
		run: func(ctx context.Context, op *operation) (string, error) {
			// migrate's deadline leaves room for a slow schema change: first check, within
			// GATEWAY_DB_TIMEOUT, that the server answers at all.
			if err := op.store.Ping(ctx); err != nil {
				return "", err
			}
			if err := migrate(ctx, postgresConnString(op.cfg), max(migrateTimeout, op.cfg.DBTimeout)); err != nil {
				return "", &exitError{code: 1, err: err} // already says "migrate: …"
			}
			return fmt.Sprintf("schema applied to database %s\n", op.cfg.PostgresDB), nil
		},
	},
	{
		name:     "company create",
		synopsis: "-name NAME",
		summary:  "Create an active company and print its id.",
		flags: func(f *cmdFlags, a *operatorArgs) {
			f.StringVar(&a.name, "name", "", "the company's `NAME` (required)")
			f.check(func() error {
				if a.name = strings.TrimSpace(a.name); a.name == "" {
					return errors.New("-name is required")
				}
				return nil
			})
		},
		run: func(ctx context.Context, op *operation) (string, error) {
			c, err := op.store.CreateCompany(ctx, op.args.name)
			return c.ID + "\n", err
		},
	},
	companyActivation(true, "Let the users of a company log in and use their tokens again.",
		"Running gateways are told within a second."),
	companyActivation(false, "Refuse the logins and tokens of every user of a company.",
		"Running gateways are told within a second and answer 403 company_inactive. No token is\n"+
			"revoked: `company activate` restores access as it was."),
	{
		name:     "user create",
		synopsis: "-email EMAIL [-name FULL_NAME] [-role ROLE] [-company COMPANY_ID] [-password-env VAR]",
		summary:  "Create an active user with a bcrypt (cost 12) password hash and print its id.",
		details:  "Emails are unique ignoring letter case, as the login compares them.",
		password: true,
		flags: func(f *cmdFlags, a *operatorArgs) {
			f.email(&a.email, "the user's `EMAIL` (required)")
			f.StringVar(&a.name, "name", "", "the user's `FULL_NAME`")
			f.StringVar(&a.role, "role", "user", "the user's `ROLE`")
			f.check(func() error {
				if a.name, a.role = strings.TrimSpace(a.name), strings.TrimSpace(a.role); a.role == "" {
					return errors.New("-role must not be empty")
				}
				return nil
			})
			f.uuid(&a.company, "company", "`UUID` of the company the user belongs to (printed by company create)", false)
		},
		run: func(ctx context.Context, op *operation) (string, error) {
			a := op.args
			duplicate := func(email string) error {
				return op.errorf("a user with email %s already exists (emails match ignoring letter case): %w", email, errDuplicate)
			}
			// Checked before the slow hash; CreateUser still refuses a duplicate created meanwhile.
			if u, err := op.store.UserByEmail(ctx, a.email); err == nil {
				return "", duplicate(u.Email)
			} else if !errors.Is(err, errNotFound) {
				return "", err
			}
			hash, err := op.hashPassword(ctx)
			if err != nil {
				return "", err
			}
			u, err := op.store.CreateUser(ctx, NewUser{Email: a.email, HashedPassword: hash, FullName: a.name, Role: a.role, CompanyID: a.company})
			if errors.Is(err, errDuplicate) {
				return "", duplicate(a.email)
			}
			return u.ID + "\n", err
		},
		// The only row CreateUser looks up is the company.
		missing: func(a *operatorArgs) string {
			return fmt.Sprintf("no company with id %s (create one with `%s company create -name NAME`)", a.company, programName)
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
		run: func(ctx context.Context, op *operation) (string, error) {
			// An unknown email fails before the slow hash.
			if _, err := op.store.UserByEmail(ctx, op.args.email); err != nil {
				return "", err
			}
			hash, err := op.hashPassword(ctx)
			if err != nil {
				return "", err
			}
			return "password of " + op.args.email + " updated\n", op.store.SetPassword(ctx, op.args.email, hash)
		},
		missing: noUser,
	},
	userActivation(true, "Allow a user to log in again (tokens revoked by the deactivation stay revoked).", ""),
	userActivation(false, "Refuse a user's logins and tokens.",
		"Running gateways are told within a second, and the user's tokens are revoked: activating\n"+
			"the user again does not bring them back. A gateway whose database notifications are down\n"+
			"notices within GATEWAY_USER_CACHE_TTL."),
	{
		name:     "user revoke-sessions",
		synopsis: "-email EMAIL",
		summary:  "Revoke every token a user holds now (sign out everywhere).",
		details: "Running gateways are told within a second. The user may sign in again at once: a token\n" +
			"issued later, even within the same second, stays valid.",
		flags: emailFlag,
		run: func(ctx context.Context, op *operation) (string, error) {
			u, err := op.store.UserByEmail(ctx, op.args.email)
			if err != nil {
				return "", err
			}
			at, err := op.store.RevokeSessions(ctx, u.ID)
			return fmt.Sprintf("sessions of %s revoked: tokens issued before %s are refused\n", op.args.email, at.UTC().Format(time.RFC3339)), err
		},
		missing: noUser,
	},
	{
		name:     "invite create",
		synopsis: "-company UUID -email EMAIL [-role user|admin] [-days N]",
		summary:  "Invite an email address into a company and print the invitation's id.",
		details: "The user with that email (any letter case) joins the company with the invitation's role at\n" +
			"their next login when they have no company yet, or when they ask to join it. An invitation\n" +
			"is used once; it is not open while the company is inactive.",
		flags: func(f *cmdFlags, a *operatorArgs) {
			f.uuid(&a.company, "company", companyUUIDUsage, true)
			f.email(&a.email, "the invited `EMAIL` (required)")
			f.StringVar(&a.role, "role", "user", "the `ROLE` the user gets on joining: user or admin")
			f.IntVar(&a.days, "days", defaultInvitationDays, fmt.Sprintf("the invitation expires after `N` days (1 to %d)", maxInvitationDays))
			f.check(func() error {
				if !knownRole(a.role) {
					return fmt.Errorf("-role %q must be user or admin", a.role)
				}
				if a.days < 1 || a.days > maxInvitationDays {
					return fmt.Errorf("-days %d must be between 1 and %d", a.days, maxInvitationDays)
				}
				return nil
			})
		},
		run: func(ctx context.Context, op *operation) (string, error) {
			a := op.args
			inv, err := op.store.CreateInvitation(ctx, Invitation{CompanyID: a.company, Email: a.email, Role: a.role,
				ExpiresAt: time.Now().Add(time.Duration(a.days) * 24 * time.Hour)})
			return inv.ID + "\n", err
		},
		missing: func(a *operatorArgs) string { return noCompany(a.company) },
	},
	{
		name:     "invite list",
		synopsis: "-company UUID",
		summary:  "List a company's open invitations, newest first: id, email, role, expiry (RFC 3339).",
		details:  "One line per invitation, fields separated by tabs; nothing when there is none.",
		flags:    func(f *cmdFlags, a *operatorArgs) { f.uuid(&a.company, "company", companyUUIDUsage, true) },
		run: func(ctx context.Context, op *operation) (string, error) {
			invs, err := op.store.ListOpenInvitations(ctx, op.args.company)
			var b strings.Builder
			for _, inv := range invs {
				fmt.Fprintf(&b, "%s\t%s\t%s\t%s\n", inv.ID, inv.Email, inv.Role, inv.ExpiresAt.UTC().Format(time.RFC3339))
			}
			return b.String(), err
		},
		missing: func(a *operatorArgs) string { return noCompany(a.company) },
	},
	{
		name:     "invite revoke",
		synopsis: "-company UUID -id UUID",
		summary:  "Revoke an open invitation of a company.",
		flags: func(f *cmdFlags, a *operatorArgs) {
			f.uuid(&a.company, "company", companyUUIDUsage, true)
			f.uuid(&a.id, "id", "the invitation's `UUID` (required; printed by invite create and invite list)", true)
		},
		run: func(ctx context.Context, op *operation) (string, error) {
			return "invitation " + op.args.id + " revoked\n", op.store.RevokeInvitation(ctx, op.args.company, op.args.id)
		},
		missing: func(a *operatorArgs) string {
			return fmt.Sprintf("no open invitation %s in company %s (accepted, revoked and expired ones cannot be revoked; "+
				"`%s invite list -company %s` shows the open ones)", a.id, a.company, programName, a.company)
		},
	},
	{
		name:     "domain add",
		synopsis: "-company UUID -domain DOMAIN",
		summary:  "Register an email domain for a company: its users without a company join it at login.",
		details: "A domain belongs to one company at most; adding it again to the same company changes\n" +
			"nothing. Domains are stored in lower case; a leading '@' is ignored.",
		flags: domainFlags,
		run: func(ctx context.Context, op *operation) (string, error) {
			a := op.args
			err := op.store.AddDomain(ctx, a.domain, a.company)
			if errors.Is(err, errDuplicate) {
				return "", op.errorf("%s belongs to another company; remove it there first with `%s domain remove`: %w", a.domain, programName, err)
			}
			return fmt.Sprintf("domain %s registered for company %s\n", a.domain, a.company), err
		},
		missing: func(a *operatorArgs) string { return noCompany(a.company) },
	},
	{
		name:     "domain remove",
		synopsis: "-company UUID -domain DOMAIN",
		summary:  "Unregister an email domain of a company (users who joined through it stay).",
		flags:    domainFlags,
		run: func(ctx context.Context, op *operation) (string, error) {
			return fmt.Sprintf("domain %s removed from company %s\n", op.args.domain, op.args.company),
				op.store.RemoveDomain(ctx, op.args.domain, op.args.company)
		},
		missing: func(a *operatorArgs) string { return fmt.Sprintf("company %s has no domain %s", a.company, a.domain) },
	},
}

func noUser(a *operatorArgs) string { return "no user with email " + a.email }

var activeVerb = map[bool]string{true: "activate", false: "deactivate"}

func companyActivation(active bool, summary, details string) *operatorCommand {
	verb := activeVerb[active]
	return &operatorCommand{name: "company " + verb, synopsis: "-id UUID", summary: summary, details: details,
		flags: func(f *cmdFlags, a *operatorArgs) { f.uuid(&a.id, "id", companyUUIDUsage, true) },
		run: func(ctx context.Context, op *operation) (string, error) {
			return "company " + op.args.id + " " + verb + "d\n", op.store.SetCompanyActive(ctx, op.args.id, active)
		},
		missing: func(a *operatorArgs) string { return noCompany(a.id) },
	}
}

func userActivation(active bool, summary, details string) *operatorCommand {
	verb := activeVerb[active]
	return &operatorCommand{name: "user " + verb, synopsis: "-email EMAIL", summary: summary, details: details,
		flags: emailFlag,
		run: func(ctx context.Context, op *operation) (string, error) {
			return op.args.email + " " + verb + "d\n", op.store.SetActive(ctx, op.args.email, active)
		},
		missing: noUser,
	}
}

func noCompany(id string) string {
	return fmt.Sprintf("no company with id %s (`%s company create -name NAME` prints the id of a new one)", id, programName)
}

func emailFlag(f *cmdFlags, a *operatorArgs) {
	f.email(&a.email, "the user's `EMAIL`, in any letter case (required)")
}

func domainFlags(f *cmdFlags, a *operatorArgs) {
	f.uuid(&a.company, "company", companyUUIDUsage, true)
	f.StringVar(&a.domain, "domain", "", "the email `DOMAIN`, e.g. example.com (required)")
	f.check(func() error {
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
	})
}

// cmdFlags: the checks run in the order the flags were defined, before any database work.
type cmdFlags struct {
	*flag.FlagSet
	checks []func() error
}

func (f *cmdFlags) check(c func() error) { f.checks = append(f.checks, c) }

// uuid defines a UUID flag whose value is kept in lower case, as stored.
func (f *cmdFlags) uuid(p *string, name, usage string, required bool) {
	f.StringVar(p, name, "", usage)
	f.check(func() error {
		switch {
		case *p == "" && required:
			return fmt.Errorf("-%s is required", name)
		case *p != "" && !isUUID(*p):
			return fmt.Errorf("-%s %q is not a UUID (e.g. 0f8fad5b-d9cb-469f-a165-70867728950e)", name, *p)
		}
		*p = strings.ToLower(*p)
		return nil
	})
}

func (f *cmdFlags) email(p *string, usage string) {
	f.StringVar(p, "email", "", usage)
	f.check(func() error {
		switch {
		case *p == "":
			return errors.New("-email is required")
		case !validEmail(*p):
			return fmt.Errorf("-email %q is not a valid email address", *p)
		}
		return nil
	})
}

// normalizeDomain returns s as company_domains stores it, or false when it is not a domain name.
// One leading '@' is dropped, since people paste the end of an address.
func normalizeDomain(s string) (string, bool) {
	d := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(s), "@"))
	labels := strings.Split(d, ".")
	if len(d) > 253 || len(labels) < 2 {
		return "", false
	}
	for _, label := range labels {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' ||
			strings.Trim(label, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return "", false
		}
	}
	return d, true
}

// cliUsage lists every command, or only those of group ("user") when group is not "".
func cliUsage(group string) string {
	var b strings.Builder
	b.WriteString("Usage:\n")
	if group == "" {
		fmt.Fprintf(&b, "  %s [-dev]\n\tRun the gateway (-dev: a demo set-up needing nothing else).\n", programName)
	}
	for _, c := range operatorCommands {
		if g, _, _ := strings.Cut(c.name, " "); group == "" || g == group {
			fmt.Fprintf(&b, "  %s\n\t%s\n", c.usageLine(), c.summary)
		}
	}
	fmt.Fprintf(&b, "  %s help [COMMAND]\n\tDescribe one command and its flags (same as COMMAND -h).\n\n", programName)
	b.WriteString(passwordSources + "\n" + databaseSettings)
	return b.String()
}

func isHelpArg(s string) bool {
	return s == "help" || s == "-h" || s == "-help" || s == "--help"
}

func isSubcommand(name string) bool {
	return isHelpArg(name) || slices.ContainsFunc(operatorCommands, func(c *operatorCommand) bool {
		group, _, _ := strings.Cut(c.name, " ")
		return group == name
	})
}

// commandGroup is the actions of a group ("user": create, set-password, ...).
func commandGroup(group string) (actions []string) {
	for _, c := range operatorCommands {
		if g, action, ok := strings.Cut(c.name, " "); ok && g == group {
			actions = append(actions, action)
		}
	}
	return actions
}

// findCommand splits args into the command and its flags; no command and no error means args
// ask for a group's list of actions.
func findCommand(args []string, help bool) (*operatorCommand, []string, error) {
	name, rest := args[0], args[1:]
	if actions := commandGroup(name); len(actions) > 0 {
		switch {
		case len(rest) == 0 && help, len(rest) > 0 && isHelpArg(rest[0]):
			return nil, nil, nil
		case len(rest) == 0:
			return nil, nil, fmt.Errorf("%s: missing action: one of %s", name, strings.Join(actions, ", "))
		}
		name, rest = name+" "+rest[0], rest[1:]
	}
	if i := slices.IndexFunc(operatorCommands, func(c *operatorCommand) bool { return c.name == name }); i >= 0 {
		return operatorCommands[i], rest, nil
	}
	group, _, _ := strings.Cut(name, " ")
	if actions := commandGroup(group); len(actions) > 0 {
		return nil, nil, fmt.Errorf("unknown command %q: %s actions are %s", name, group, strings.Join(actions, ", "))
	}
	return nil, nil, fmt.Errorf("unknown command %q", name)
}

func (c *operatorCommand) usageLine() string {
	return strings.TrimSpace(programName + " " + c.name + " " + c.synopsis)
}

func (c *operatorCommand) flagSet(a *operatorArgs) *cmdFlags {
	f := &cmdFlags{FlagSet: flag.NewFlagSet(c.name, flag.ContinueOnError)}
	f.SetOutput(io.Discard) // a parse error is returned, and main prints it once
	if c.flags != nil {
		c.flags(f, a)
	}
	if c.password {
		f.StringVar(&a.passwordEnv, "password-env", "", "read the password from the environment variable `VAR` instead of standard input")
	}
	return f
}

func (c *operatorCommand) printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", c.usageLine(), c.summary)
	if c.details != "" {
		fmt.Fprintln(w, c.details)
	}
	if c.flags != nil {
		fmt.Fprintln(w, "\nFlags:")
		f := c.flagSet(&operatorArgs{})
		f.SetOutput(w)
		f.PrintDefaults()
	}
	if c.password {
		fmt.Fprintf(w, "\n%s\n", passwordSources)
	}
	fmt.Fprintf(w, "\n%s", databaseSettings)
}

// refusePasswordFlag names the mistake of passing a password as an argument, never its value.
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

func runSubcommand(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if isHelpArg(args[0]) && (args[0] != "help" || len(args) == 1) {
		fmt.Fprint(stdout, cliUsage(""))
		return nil
	}
	help := args[0] == "help"
	if help {
		args = args[1:]
	}
	cmd, rest, err := findCommand(args, help)
	switch {
	case err != nil && help:
		return usageError(fmt.Errorf("help: %w", err))
	case err != nil:
		return usageError(fmt.Errorf("%w (run `%s help`)", err, programName))
	case cmd == nil:
		fmt.Fprint(stdout, cliUsage(args[0]))
		return nil
	case help:
		cmd.printUsage(stdout)
		return nil
	}

	var a operatorArgs
	f := cmd.flagSet(&a)
	if err := refusePasswordFlag(cmd, rest); err != nil {
		return usageError(fmt.Errorf("%s: %w", cmd.name, err))
	}
	if err := f.Parse(rest); errors.Is(err, flag.ErrHelp) {
		cmd.printUsage(stdout)
		return nil
	} else if err != nil {
		return usageError(fmt.Errorf("%s: %w (run `%s %s -h`)", cmd.name, err, programName, cmd.name))
	}
	if f.NArg() > 0 {
		if cmd.password { // the stray argument may well be a password: do not print it
			return usageError(fmt.Errorf("%s: unexpected argument after the flags (quote values that contain spaces; passwords are read from standard input or -password-env VAR, never from arguments)", cmd.name))
		}
		return usageError(fmt.Errorf("%s: unexpected argument %q (run `%s %s -h`)", cmd.name, f.Arg(0), programName, cmd.name))
	}
	for _, check := range f.checks {
		if err := check(); err != nil {
			return usageError(fmt.Errorf("%s: %w", cmd.name, err))
		}
	}

	cfg, err := loadDatabaseConfig(getenv)
	if err != nil {
		return usageError(fmt.Errorf("%s: invalid configuration:\n%w", cmd.name, err))
	}
	op := &operation{operatorCommand: cmd, args: a, cfg: cfg}
	if cmd.password {
		// Before any database work, so a mistake here costs nothing.
		if op.password, err = readPassword(ctx, stdin, stderr, getenv, a.passwordEnv); err != nil {
			return fmt.Errorf("%s: %w", cmd.name, err)
		}
	}
	if op.store, err = openPostgres(ctx, postgresConnString(cfg), cfg.DBTimeout); err != nil {
		return usageError(fmt.Errorf("%s: invalid database settings: %w", cmd.name, err))
	}
	defer op.store.Close()
	out, err := cmd.run(ctx, op)
	if err != nil {
		return op.fail(ctx, err)
	}
	fmt.Fprint(stdout, out)
	return nil
}

func (op *operation) hashPassword(ctx context.Context) (string, error) {
	pool := newHashPool(1, time.Minute)
	defer pool.close()
	hash, err := pool.hash(ctx, op.password)
	if err != nil {
		return "", op.errorf("hash password: %w", err)
	}
	return hash, nil
}

// errorf is an error the command explains itself, prefixed with its name; fail passes it on.
func (op *operation) errorf(format string, args ...any) error {
	return &exitError{code: 1, err: fmt.Errorf("%s: "+format, append([]any{op.name}, args...)...)}
}

// fail explains a store error for the operator.
func (op *operation) fail(ctx context.Context, err error) error {
	switch {
	case errors.As(err, new(*exitError)):
		return err
	case op.missing != nil && errors.Is(err, errNotFound):
		return fmt.Errorf("%s: %s: %w", op.name, op.missing(&op.args), errNotFound)
	case ctx.Err() != nil:
		return fmt.Errorf("%s: interrupted: %w", op.name, err)
	case errors.Is(err, errInvalidInput): // the usage checks should have caught it
		return usageError(fmt.Errorf("%s: %w", op.name, err))
	case isPgCode(err, "42P01"), isPgCode(err, "42703"): // undefined_table, undefined_column
		return fmt.Errorf("%s: database %s lacks the gateway's tables or columns; run `%s migrate` first: %w", op.name, op.cfg.PostgresDB, programName, err)
	case errors.As(err, new(*pgconn.PgError)):
		return fmt.Errorf("%s: database %s refused: %w", op.name, op.cfg.PostgresDB, err)
	default:
		return fmt.Errorf("%s: database %s at %s:%d unavailable (is PostgreSQL running, and are GATEWAY_POSTGRES_* right?): %w",
			op.name, op.cfg.PostgresDB, op.cfg.PostgresServer, op.cfg.PostgresPort, err)
	}
}

// readPassword reads the variable envName, or else stdin's first line; the wait ends with ctx
// (Ctrl-C).
func readPassword(ctx context.Context, stdin io.Reader, stderr io.Writer, getenv func(string) string, envName string) (string, error) {
	var password string
	if envName != "" {
		if password = getenv(envName); password == "" {
			return "", usageError(fmt.Errorf("environment variable %s (named by -password-env) is empty or unset", envName))
		}
	} else {
		if f, ok := stdin.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				fmt.Fprint(stderr, "New password (shown as typed; end with Enter): ")
			}
		}
		var line string
		var err error
		read := make(chan struct{})
		go func() {
			line, err = bufio.NewReader(io.LimitReader(stdin, maxPasswordBytes+2)).ReadString('\n') // room for "\r\n"
			close(read)
		}()
		select {
		case <-read:
		case <-ctx.Done():
			return "", fmt.Errorf("interrupted while waiting for the password: %w", ctx.Err())
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password from standard input: %w", err)
		}
		if password = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"); password == "" {
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

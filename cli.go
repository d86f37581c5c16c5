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
	"runtime"
	"strings"
	"time"
)

const cliUsage = `Usage: atenex-api-gateway [-dev]              run the gateway
       atenex-api-gateway migrate               apply the embedded schema.sql (idempotent)
       atenex-api-gateway company create -name NAME
       atenex-api-gateway user create -email EMAIL [-name FULL_NAME] [-role ROLE] [-company COMPANY_ID] [-password-env VAR]
       atenex-api-gateway user set-password -email EMAIL [-password-env VAR]
       atenex-api-gateway user activate -email EMAIL
       atenex-api-gateway user deactivate -email EMAIL

Passwords are read from the first line of standard input, or from the environment variable
named by -password-env; never from the command line. Database settings come from
GATEWAY_POSTGRES_USER, _PASSWORD, _SERVER, _PORT and _DB (and an optional .env file).
Exit codes: 0 success, 1 operation failed, 2 invalid usage or configuration.
`

func isSubcommand(name string) bool {
	switch name {
	case "migrate", "company", "user", "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// runSubcommand runs one operator command and prints its result on stdout.
func runSubcommand(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, cliUsage)
		return nil
	}
	action := args[0]
	rest := args[1:]
	if action != "migrate" {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			fmt.Fprint(stderr, cliUsage)
			return usageError(fmt.Errorf("%s: missing action", action))
		}
		action, rest = action+" "+rest[0], rest[1:]
	}

	flags := flag.NewFlagSet(action, flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() { fmt.Fprint(stderr, cliUsage) }
	name := flags.String("name", "", "company name (company create) or full name (user create)")
	email := flags.String("email", "", "user email")
	role := flags.String("role", "user", "user role")
	company := flags.String("company", "", "company UUID the user belongs to")
	passwordEnv := flags.String("password-env", "", "read the password from this environment variable instead of stdin")
	if err := flags.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError(err)
	}
	if flags.NArg() > 0 {
		return usageError(fmt.Errorf("%s: unexpected argument %q", action, flags.Arg(0)))
	}

	needEmail := func() error {
		if !validEmail(*email) {
			return usageError(fmt.Errorf("%s: -email must be a valid email address", action))
		}
		return nil
	}
	switch action {
	case "migrate":
	case "company create":
		if strings.TrimSpace(*name) == "" {
			return usageError(errors.New("company create: -name is required"))
		}
	case "user create":
		if err := needEmail(); err != nil {
			return err
		}
		if *company != "" && !isUUID(*company) {
			return usageError(errors.New("user create: -company must be a UUID"))
		}
	case "user set-password", "user activate", "user deactivate":
		if err := needEmail(); err != nil {
			return err
		}
	default:
		fmt.Fprint(stderr, cliUsage)
		return usageError(fmt.Errorf("unknown command %q", action))
	}

	cfg, err := loadDatabaseConfig(getenv)
	if err != nil {
		return usageError(fmt.Errorf("invalid configuration:\n%w", err))
	}
	connString := postgresConnString(cfg)
	if action == "migrate" {
		if err := migrate(ctx, connString, 30*time.Second); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		fmt.Fprintln(stdout, "schema applied")
		return nil
	}

	store, err := openPostgres(ctx, connString, cfg.DBTimeout)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer store.Close()

	readPassword := func() (string, error) {
		password, err := readSecret(stdin, getenv, *passwordEnv)
		if err != nil {
			return "", usageError(fmt.Errorf("%s: %w", action, err))
		}
		pool := newHashPool(runtime.GOMAXPROCS(0), time.Minute)
		defer pool.close()
		hash, err := pool.hash(ctx, password)
		if err != nil {
			return "", fmt.Errorf("%s: hash password: %w", action, err)
		}
		return hash, nil
	}

	switch action {
	case "company create":
		c, err := store.CreateCompany(ctx, strings.TrimSpace(*name))
		if err != nil {
			return fmt.Errorf("company create: %w", err)
		}
		fmt.Fprintln(stdout, c.ID)
	case "user create":
		hash, err := readPassword()
		if err != nil {
			return err
		}
		u, err := store.CreateUser(ctx, NewUser{Email: *email, HashedPassword: hash, FullName: *name, Role: *role, CompanyID: strings.ToLower(*company)})
		if err != nil {
			return fmt.Errorf("user create: %w", err)
		}
		fmt.Fprintln(stdout, u.ID)
	case "user set-password":
		hash, err := readPassword()
		if err != nil {
			return err
		}
		if err := store.SetPassword(ctx, *email, hash); err != nil {
			return fmt.Errorf("user set-password: %w", err)
		}
		fmt.Fprintln(stdout, "password updated")
	case "user activate", "user deactivate":
		if err := store.SetActive(ctx, *email, action == "user activate"); err != nil {
			return fmt.Errorf("%s: %w", action, err)
		}
		fmt.Fprintln(stdout, strings.TrimPrefix(action, "user ")+"d")
	}
	return nil
}

// minOperatorPasswordBytes is the shortest password an operator may set.
const minOperatorPasswordBytes = 8

// readSecret reads a password from the named environment variable, or else from the first
// line of stdin.
func readSecret(stdin io.Reader, getenv func(string) string, envName string) (string, error) {
	var password string
	if envName != "" {
		password = getenv(envName)
		if password == "" {
			return "", fmt.Errorf("environment variable %s is empty or unset", envName)
		}
	} else {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password from stdin: %w", err)
		}
		password = strings.TrimRight(line, "\r\n")
	}
	if len(password) < minOperatorPasswordBytes || len(password) > maxPasswordBytes {
		return "", fmt.Errorf("password must be %d to %d bytes", minOperatorPasswordBytes, maxPasswordBytes)
	}
	return password, nil
}

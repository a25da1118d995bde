
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'memorun' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'memorun'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'memorun' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'Include environment variables whose name matches PATTERN in the key')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'Include environment variables whose name matches PATTERN in the key')
            [CompletionResult]::new('-i', '-i', [CompletionResultType]::ParameterName, 'Include the content of a file, a directory tree or a quoted glob')
            [CompletionResult]::new('--input', '--input', [CompletionResultType]::ParameterName, 'Include the content of a file, a directory tree or a quoted glob')
            [CompletionResult]::new('--exclude', '--exclude', [CompletionResultType]::ParameterName, 'Leave paths matching this glob out of `--input` walks and globs')
            [CompletionResult]::new('-x', '-x', [CompletionResultType]::ParameterName, 'Leave arguments matching this glob out of the key')
            [CompletionResult]::new('--ignore-arg', '--ignore-arg', [CompletionResultType]::ParameterName, 'Leave arguments matching this glob out of the key')
            [CompletionResult]::new('-k', '-k', [CompletionResultType]::ParameterName, 'Put extra literal text into the key')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'Put extra literal text into the key')
            [CompletionResult]::new('--key-cmd', '--key-cmd', [CompletionResultType]::ParameterName, 'Run CMD with `sh -c` and put its stdout and exit status into the key')
            [CompletionResult]::new('--stdin', '--stdin', [CompletionResultType]::ParameterName, 'How stdin goes into the key: auto, hash or ignore')
            [CompletionResult]::new('--base-dir', '--base-dir', [CompletionResultType]::ParameterName, 'Key paths under DIR relative to it [env: MEMORUN_BASE_DIR]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'A file, directory or quoted glob the command writes: restored on a hit')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'A file, directory or quoted glob the command writes: restored on a hit')
            [CompletionResult]::new('--trace-exclude', '--trace-exclude', [CompletionResultType]::ParameterName, 'Leave paths matching this glob out of what --trace records')
            [CompletionResult]::new('-t', '-t', [CompletionResultType]::ParameterName, 'Do not replay an entry older than DURATION')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'Do not replay an entry older than DURATION')
            [CompletionResult]::new('--stale', '--stale', [CompletionResultType]::ParameterName, 'Past this age, replay at once and refresh in the background')
            [CompletionResult]::new('--remote', '--remote', [CompletionResultType]::ParameterName, 'A cache shared between machines [env: MEMORUN_REMOTE]')
            [CompletionResult]::new('--cache-dir', '--cache-dir', [CompletionResultType]::ParameterName, 'Where the store lives [env: MEMORUN_DIR]')
            [CompletionResult]::new('--no-auto-inputs', '--no-auto-inputs', [CompletionResultType]::ParameterName, 'Do not hash arguments that name existing files')
            [CompletionResult]::new('--no-cwd', '--no-cwd', [CompletionResultType]::ParameterName, 'Leave the working directory out of the key')
            [CompletionResult]::new('--no-auto-outputs', '--no-auto-outputs', [CompletionResultType]::ParameterName, 'Do not capture the files the command creates that are named on its command line')
            [CompletionResult]::new('--trace', '--trace', [CompletionResultType]::ParameterName, 'Trace the command''s file-system calls and key on every file it read')
            [CompletionResult]::new('--no-default-trace-excludes', '--no-default-trace-excludes', [CompletionResultType]::ParameterName, 'Do not leave out the toolchain state --trace leaves out by default')
            [CompletionResult]::new('--cache-failures', '--cache-failures', [CompletionResultType]::ParameterName, 'Also record runs that exit with a non-zero code')
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'Run even on a hit, and record the new result')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Run even on a hit, and record the new result')
            [CompletionResult]::new('--no-cache', '--no-cache', [CompletionResultType]::ParameterName, 'Run plainly: neither read nor write the cache')
            [CompletionResult]::new('--remote-read-only', '--remote-read-only', [CompletionResultType]::ParameterName, 'Look entries up on the remote, never write to it [env: MEMORUN_REMOTE_READ_ONLY]')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print a one-line status on stderr (hit or miss, time saved)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print a one-line status on stderr (hit or miss, time saved)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print no warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('why', 'why', [CompletionResultType]::ParameterValue, 'Explain whether COMMAND would hit or miss, and why; runs nothing')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'Show counters, sizes and time saved')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the recorded entries, newest first')
            [CompletionResult]::new('clear', 'clear', [CompletionResultType]::ParameterValue, 'Remove entries: all of them, or those matching the filters')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'memorun;why' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'Include environment variables whose name matches PATTERN in the key')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'Include environment variables whose name matches PATTERN in the key')
            [CompletionResult]::new('-i', '-i', [CompletionResultType]::ParameterName, 'Include the content of a file, a directory tree or a quoted glob')
            [CompletionResult]::new('--input', '--input', [CompletionResultType]::ParameterName, 'Include the content of a file, a directory tree or a quoted glob')
            [CompletionResult]::new('--exclude', '--exclude', [CompletionResultType]::ParameterName, 'Leave paths matching this glob out of `--input` walks and globs')
            [CompletionResult]::new('-x', '-x', [CompletionResultType]::ParameterName, 'Leave arguments matching this glob out of the key')
            [CompletionResult]::new('--ignore-arg', '--ignore-arg', [CompletionResultType]::ParameterName, 'Leave arguments matching this glob out of the key')
            [CompletionResult]::new('-k', '-k', [CompletionResultType]::ParameterName, 'Put extra literal text into the key')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'Put extra literal text into the key')
            [CompletionResult]::new('--key-cmd', '--key-cmd', [CompletionResultType]::ParameterName, 'Run CMD with `sh -c` and put its stdout and exit status into the key')
            [CompletionResult]::new('--stdin', '--stdin', [CompletionResultType]::ParameterName, 'How stdin goes into the key: auto, hash or ignore')
            [CompletionResult]::new('--base-dir', '--base-dir', [CompletionResultType]::ParameterName, 'Key paths under DIR relative to it [env: MEMORUN_BASE_DIR]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'A file, directory or quoted glob the command writes: restored on a hit')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'A file, directory or quoted glob the command writes: restored on a hit')
            [CompletionResult]::new('--trace-exclude', '--trace-exclude', [CompletionResultType]::ParameterName, 'Leave paths matching this glob out of what --trace records')
            [CompletionResult]::new('-t', '-t', [CompletionResultType]::ParameterName, 'Do not replay an entry older than DURATION')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'Do not replay an entry older than DURATION')
            [CompletionResult]::new('--stale', '--stale', [CompletionResultType]::ParameterName, 'Past this age, replay at once and refresh in the background')
            [CompletionResult]::new('--remote', '--remote', [CompletionResultType]::ParameterName, 'A cache shared between machines [env: MEMORUN_REMOTE]')
            [CompletionResult]::new('--cache-dir', '--cache-dir', [CompletionResultType]::ParameterName, 'Where the store lives [env: MEMORUN_DIR]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print a JSON object instead of text')
            [CompletionResult]::new('--no-auto-inputs', '--no-auto-inputs', [CompletionResultType]::ParameterName, 'Do not hash arguments that name existing files')
            [CompletionResult]::new('--no-cwd', '--no-cwd', [CompletionResultType]::ParameterName, 'Leave the working directory out of the key')
            [CompletionResult]::new('--no-auto-outputs', '--no-auto-outputs', [CompletionResultType]::ParameterName, 'Do not capture the files the command creates that are named on its command line')
            [CompletionResult]::new('--trace', '--trace', [CompletionResultType]::ParameterName, 'Trace the command''s file-system calls and key on every file it read')
            [CompletionResult]::new('--no-default-trace-excludes', '--no-default-trace-excludes', [CompletionResultType]::ParameterName, 'Do not leave out the toolchain state --trace leaves out by default')
            [CompletionResult]::new('--cache-failures', '--cache-failures', [CompletionResultType]::ParameterName, 'Also record runs that exit with a non-zero code')
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'Run even on a hit, and record the new result')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Run even on a hit, and record the new result')
            [CompletionResult]::new('--no-cache', '--no-cache', [CompletionResultType]::ParameterName, 'Run plainly: neither read nor write the cache')
            [CompletionResult]::new('--remote-read-only', '--remote-read-only', [CompletionResultType]::ParameterName, 'Look entries up on the remote, never write to it [env: MEMORUN_REMOTE_READ_ONLY]')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print a one-line status on stderr (hit or miss, time saved)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print a one-line status on stderr (hit or miss, time saved)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print no warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'memorun;stats' {
            [CompletionResult]::new('--cache-dir', '--cache-dir', [CompletionResultType]::ParameterName, 'Where the store lives [env: MEMORUN_DIR]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print a JSON object instead of a table')
            [CompletionResult]::new('--zero', '--zero', [CompletionResultType]::ParameterName, 'Reset the counters (the entries stay)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'memorun;list' {
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Only the N newest entries')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'Only the N newest entries')
            [CompletionResult]::new('--cache-dir', '--cache-dir', [CompletionResultType]::ParameterName, 'Where the store lives [env: MEMORUN_DIR]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print a JSON array instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'memorun;clear' {
            [CompletionResult]::new('--older-than', '--older-than', [CompletionResultType]::ParameterName, 'Only entries last used longer ago than DURATION')
            [CompletionResult]::new('--cache-dir', '--cache-dir', [CompletionResultType]::ParameterName, 'Where the store lives [env: MEMORUN_DIR]')
            [CompletionResult]::new('--failed', '--failed', [CompletionResultType]::ParameterName, 'Only entries of runs that exited with a non-zero code')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Say what would be removed, and remove nothing')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Reset the cache: delete its database, hit log and blobs, then start a new store')
            [CompletionResult]::new('--prefix', '--prefix', [CompletionResultType]::ParameterName, 'With -- COMMAND: every command that starts with those words')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'memorun;completions' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'memorun;help' {
            [CompletionResult]::new('why', 'why', [CompletionResultType]::ParameterValue, 'Explain whether COMMAND would hit or miss, and why; runs nothing')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'Show counters, sizes and time saved')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the recorded entries, newest first')
            [CompletionResult]::new('clear', 'clear', [CompletionResultType]::ParameterValue, 'Remove entries: all of them, or those matching the filters')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'memorun;help;why' {
            break
        }
        'memorun;help;stats' {
            break
        }
        'memorun;help;list' {
            break
        }
        'memorun;help;clear' {
            break
        }
        'memorun;help;completions' {
            break
        }
        'memorun;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}

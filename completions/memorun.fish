# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_memorun_global_optspecs
    string join \n e/env= i/input= exclude= x/ignore-arg= k/key= key-cmd= stdin= no-auto-inputs no-cwd base-dir= o/output= no-auto-outputs trace trace-exclude= no-default-trace-excludes cache-failures t/ttl= stale= f/force no-cache remote= remote-read-only v/verbose q/quiet cache-dir= h/help V/version
end

function __fish_memorun_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_memorun_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_memorun_using_subcommand
    set -l cmd (__fish_memorun_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c memorun -n "__fish_memorun_needs_command" -s e -l env -d 'Include environment variables whose name matches PATTERN in the key' -r
complete -c memorun -n "__fish_memorun_needs_command" -s i -l input -d 'Include the content of a file, a directory tree or a quoted glob' -r
complete -c memorun -n "__fish_memorun_needs_command" -l exclude -d 'Leave paths matching this glob out of `--input` walks and globs' -r
complete -c memorun -n "__fish_memorun_needs_command" -s x -l ignore-arg -d 'Leave arguments matching this glob out of the key' -r
complete -c memorun -n "__fish_memorun_needs_command" -s k -l key -d 'Put extra literal text into the key' -r
complete -c memorun -n "__fish_memorun_needs_command" -l key-cmd -d 'Run CMD with `sh -c` and put its stdout and exit status into the key' -r
complete -c memorun -n "__fish_memorun_needs_command" -l stdin -d 'How stdin goes into the key: auto, hash or ignore' -r -f -a "auto\t'Hash stdin when it is a file or a pipe; not when it is a terminal'
hash\t'Always read stdin to EOF and hash it, even from a terminal'
ignore\t'Never read or hash stdin; the command inherits it as is'"
complete -c memorun -n "__fish_memorun_needs_command" -l base-dir -d 'Key paths under DIR relative to it [env: MEMORUN_BASE_DIR]' -r -F
complete -c memorun -n "__fish_memorun_needs_command" -s o -l output -d 'A file, directory or quoted glob the command writes: restored on a hit' -r
complete -c memorun -n "__fish_memorun_needs_command" -l trace-exclude -d 'Leave paths matching this glob out of what --trace records' -r
complete -c memorun -n "__fish_memorun_needs_command" -s t -l ttl -d 'Do not replay an entry older than DURATION' -r
complete -c memorun -n "__fish_memorun_needs_command" -l stale -d 'Past this age, replay at once and refresh in the background' -r
complete -c memorun -n "__fish_memorun_needs_command" -l remote -d 'A cache shared between machines [env: MEMORUN_REMOTE]' -r
complete -c memorun -n "__fish_memorun_needs_command" -l cache-dir -d 'Where the store lives [env: MEMORUN_DIR]' -r -F
complete -c memorun -n "__fish_memorun_needs_command" -l no-auto-inputs -d 'Do not hash arguments that name existing files'
complete -c memorun -n "__fish_memorun_needs_command" -l no-cwd -d 'Leave the working directory out of the key'
complete -c memorun -n "__fish_memorun_needs_command" -l no-auto-outputs -d 'Do not capture the files the command creates that are named on its command line'
complete -c memorun -n "__fish_memorun_needs_command" -l trace -d 'Trace the command\'s file-system calls and key on every file it read'
complete -c memorun -n "__fish_memorun_needs_command" -l no-default-trace-excludes -d 'Do not leave out the toolchain state --trace leaves out by default'
complete -c memorun -n "__fish_memorun_needs_command" -l cache-failures -d 'Also record runs that exit with a non-zero code'
complete -c memorun -n "__fish_memorun_needs_command" -s f -l force -d 'Run even on a hit, and record the new result'
complete -c memorun -n "__fish_memorun_needs_command" -l no-cache -d 'Run plainly: neither read nor write the cache'
complete -c memorun -n "__fish_memorun_needs_command" -l remote-read-only -d 'Look entries up on the remote, never write to it [env: MEMORUN_REMOTE_READ_ONLY]'
complete -c memorun -n "__fish_memorun_needs_command" -s v -l verbose -d 'Print a one-line status on stderr (hit or miss, time saved)'
complete -c memorun -n "__fish_memorun_needs_command" -s q -l quiet -d 'Print no warnings'
complete -c memorun -n "__fish_memorun_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c memorun -n "__fish_memorun_needs_command" -s V -l version -d 'Print version'
complete -c memorun -n "__fish_memorun_needs_command" -a "why" -d 'Explain whether COMMAND would hit or miss, and why; runs nothing'
complete -c memorun -n "__fish_memorun_needs_command" -a "stats" -d 'Show counters, sizes and time saved'
complete -c memorun -n "__fish_memorun_needs_command" -a "list" -d 'List the recorded entries, newest first'
complete -c memorun -n "__fish_memorun_needs_command" -a "clear" -d 'Remove entries: all of them, or those matching the filters'
complete -c memorun -n "__fish_memorun_needs_command" -a "completions" -d 'Print a shell completion script'
complete -c memorun -n "__fish_memorun_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c memorun -n "__fish_memorun_using_subcommand why" -s e -l env -d 'Include environment variables whose name matches PATTERN in the key' -r
complete -c memorun -n "__fish_memorun_using_subcommand why" -s i -l input -d 'Include the content of a file, a directory tree or a quoted glob' -r
complete -c memorun -n "__fish_memorun_using_subcommand why" -l exclude -d 'Leave paths matching this glob out of `--input` walks and globs' -r
complete -c memorun -n "__fish_memorun_using_subcommand why" -s x -l ignore-arg -d 'Leave arguments matching this glob out of the key' -r
complete -c memorun -n "__fish_memorun_using_subcommand why" -s k -l key -d 'Put extra literal text into the key' -r
complete -c memorun -n "__fish_memorun_using_subcommand why" -l key-cmd -d 'Run CMD with `sh -c` and put its stdout and exit status into the key' -r
complete -c memorun -n "__fish_memorun_using_subcommand why" -l stdin -d 'How stdin goes into the key: auto, hash or ignore' -r -f -a "auto\t'Hash stdin when it is a file or a pipe; not when it is a terminal'
hash\t'Always read stdin to EOF and hash it, even from a terminal'
ignore\t'Never read or hash stdin; the command inherits it as is'"
complete -c memorun -n "__fish_memorun_using_subcommand why" -l base-dir -d 'Key paths under DIR relative to it [env: MEMORUN_BASE_DIR]' -r -F
complete -c memorun -n "__fish_memorun_using_subcommand why" -s o -l output -d 'A file, directory or quoted glob the command writes: restored on a hit' -r
complete -c memorun -n "__fish_memorun_using_subcommand why" -l trace-exclude -d 'Leave paths matching this glob out of what --trace records' -r
complete -c memorun -n "__fish_memorun_using_subcommand why" -s t -l ttl -d 'Do not replay an entry older than DURATION' -r
complete -c memorun -n "__fish_memorun_using_subcommand why" -l stale -d 'Past this age, replay at once and refresh in the background' -r
complete -c memorun -n "__fish_memorun_using_subcommand why" -l remote -d 'A cache shared between machines [env: MEMORUN_REMOTE]' -r
complete -c memorun -n "__fish_memorun_using_subcommand why" -l cache-dir -d 'Where the store lives [env: MEMORUN_DIR]' -r -F
complete -c memorun -n "__fish_memorun_using_subcommand why" -l json -d 'Print a JSON object instead of text'
complete -c memorun -n "__fish_memorun_using_subcommand why" -l no-auto-inputs -d 'Do not hash arguments that name existing files'
complete -c memorun -n "__fish_memorun_using_subcommand why" -l no-cwd -d 'Leave the working directory out of the key'
complete -c memorun -n "__fish_memorun_using_subcommand why" -l no-auto-outputs -d 'Do not capture the files the command creates that are named on its command line'
complete -c memorun -n "__fish_memorun_using_subcommand why" -l trace -d 'Trace the command\'s file-system calls and key on every file it read'
complete -c memorun -n "__fish_memorun_using_subcommand why" -l no-default-trace-excludes -d 'Do not leave out the toolchain state --trace leaves out by default'
complete -c memorun -n "__fish_memorun_using_subcommand why" -l cache-failures -d 'Also record runs that exit with a non-zero code'
complete -c memorun -n "__fish_memorun_using_subcommand why" -s f -l force -d 'Run even on a hit, and record the new result'
complete -c memorun -n "__fish_memorun_using_subcommand why" -l no-cache -d 'Run plainly: neither read nor write the cache'
complete -c memorun -n "__fish_memorun_using_subcommand why" -l remote-read-only -d 'Look entries up on the remote, never write to it [env: MEMORUN_REMOTE_READ_ONLY]'
complete -c memorun -n "__fish_memorun_using_subcommand why" -s v -l verbose -d 'Print a one-line status on stderr (hit or miss, time saved)'
complete -c memorun -n "__fish_memorun_using_subcommand why" -s q -l quiet -d 'Print no warnings'
complete -c memorun -n "__fish_memorun_using_subcommand why" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c memorun -n "__fish_memorun_using_subcommand stats" -l cache-dir -d 'Where the store lives [env: MEMORUN_DIR]' -r -F
complete -c memorun -n "__fish_memorun_using_subcommand stats" -l json -d 'Print a JSON object instead of a table'
complete -c memorun -n "__fish_memorun_using_subcommand stats" -l zero -d 'Reset the counters (the entries stay)'
complete -c memorun -n "__fish_memorun_using_subcommand stats" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c memorun -n "__fish_memorun_using_subcommand list" -s n -l limit -d 'Only the N newest entries' -r
complete -c memorun -n "__fish_memorun_using_subcommand list" -l cache-dir -d 'Where the store lives [env: MEMORUN_DIR]' -r -F
complete -c memorun -n "__fish_memorun_using_subcommand list" -l json -d 'Print a JSON array instead of a table'
complete -c memorun -n "__fish_memorun_using_subcommand list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c memorun -n "__fish_memorun_using_subcommand clear" -l older-than -d 'Only entries last used longer ago than DURATION' -r
complete -c memorun -n "__fish_memorun_using_subcommand clear" -l cache-dir -d 'Where the store lives [env: MEMORUN_DIR]' -r -F
complete -c memorun -n "__fish_memorun_using_subcommand clear" -l failed -d 'Only entries of runs that exited with a non-zero code'
complete -c memorun -n "__fish_memorun_using_subcommand clear" -l dry-run -d 'Say what would be removed, and remove nothing'
complete -c memorun -n "__fish_memorun_using_subcommand clear" -l all -d 'Reset the cache: delete its database, hit log and blobs, then start a new store'
complete -c memorun -n "__fish_memorun_using_subcommand clear" -l prefix -d 'With -- COMMAND: every command that starts with those words'
complete -c memorun -n "__fish_memorun_using_subcommand clear" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c memorun -n "__fish_memorun_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c memorun -n "__fish_memorun_using_subcommand help; and not __fish_seen_subcommand_from why stats list clear completions help" -f -a "why" -d 'Explain whether COMMAND would hit or miss, and why; runs nothing'
complete -c memorun -n "__fish_memorun_using_subcommand help; and not __fish_seen_subcommand_from why stats list clear completions help" -f -a "stats" -d 'Show counters, sizes and time saved'
complete -c memorun -n "__fish_memorun_using_subcommand help; and not __fish_seen_subcommand_from why stats list clear completions help" -f -a "list" -d 'List the recorded entries, newest first'
complete -c memorun -n "__fish_memorun_using_subcommand help; and not __fish_seen_subcommand_from why stats list clear completions help" -f -a "clear" -d 'Remove entries: all of them, or those matching the filters'
complete -c memorun -n "__fish_memorun_using_subcommand help; and not __fish_seen_subcommand_from why stats list clear completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c memorun -n "__fish_memorun_using_subcommand help; and not __fish_seen_subcommand_from why stats list clear completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'

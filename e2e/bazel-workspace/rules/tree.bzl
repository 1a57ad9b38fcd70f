"""A rule whose single action has a directory (tree artifact) output.

Remote caches must store such outputs as `output_directories` with a Tree
blob, which is a different path through the server than plain files.
"""

def _tree_impl(ctx):
    out = ctx.actions.declare_directory(ctx.label.name)
    ctx.actions.run_shell(
        outputs = [out],
        arguments = [out.path, ctx.attr.greeting],
        # A nested layout with an empty file. (No empty directory: Bazel 4.2
        # drops those from tree artifacts used as inputs, so the listing below
        # would depend on where the tree came from.)
        command = """
            set -eu
            mkdir -p "$1/sub/deeper"
            printf '%s\\n' "$2" > "$1/greeting.txt"
            printf 'one\\ntwo\\nthree\\n' > "$1/sub/numbers.txt"
            : > "$1/sub/deeper/empty.txt"
        """,
        mnemonic = "MakeTree",
        progress_message = "Making tree %s" % out.short_path,
    )
    return [DefaultInfo(
        files = depset([out]),
        # So that tests listing the tree in `data` see it in their runfiles.
        runfiles = ctx.runfiles(files = [out]),
    )]

tree = rule(
    implementation = _tree_impl,
    attrs = {"greeting": attr.string(mandatory = True)},
)

// kvcompress command-line tool (generate, kept). Filled in by the host issue.
print("kvcompress: not yet implemented")

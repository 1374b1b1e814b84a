"""One ComponentResource per platform part; each parents its children and registers outputs."""

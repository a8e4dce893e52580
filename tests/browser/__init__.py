"""Browser tests of the web UI (marker browser): Playwright driving Debian's chromium."""

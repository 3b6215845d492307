"""Run every benchmark: ``make bench``."""

from bench import auth, startup

if __name__ == "__main__":
    startup.main()
    auth.main()

from gradpath.cli import main

if __name__ == "__main__":  # not when a child process of the server imports it (multiprocessing)
    raise SystemExit(main())

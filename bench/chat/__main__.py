from bench.chat.run import main

if __name__ == "__main__":  # the fake model's process (spawned) imports this module again
    main()

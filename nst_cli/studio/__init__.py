"""`nst studio`: the tool in a browser, for people who do not live in a terminal (the
`[studio]` extra: `pip install "nst-cli[studio]"`, built on Gradio).

    actions   what the buttons do, in plain Python, through the library API
    page      the Gradio page wired to the actions
    server    serving it safely (loopback, Host check, password, offline)
    settings  the form as a Config, a command line, and the advanced keys from the models
    runs      the run folders under the output folder, whoever made them
    uploads   uploaded images checked like the CLI's inputs, kept by content
    jobs      runs in threads, with progress and Stop
"""

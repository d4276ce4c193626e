from stackc.cli import run

run()

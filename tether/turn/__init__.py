"""A chat turn, from the user's message on disk to the answer stored: the layer between
the client's methods and the store, the window builder and the router.

Nothing is imported here: `tether.client` loads `core` on the first turn, so session
operations and the CLI's light paths never pay for the router.
"""

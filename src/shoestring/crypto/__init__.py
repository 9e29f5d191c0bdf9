"""Encryption at rest: chunked AES-256-GCM files, keys, and encrypted folders.

* :mod:`.chunked` is the byte format of one encrypted file (streaming, bounded
  memory for any size; every chunk authenticated with its index, a last-chunk
  flag and the file's name in its folder).
* :mod:`.keys` reads the 32-byte key (``$SHOESTRING_ENCRYPTION_KEY``, base64, or a
  key file) and names it by a key id that reveals nothing about it.
* :mod:`.folder` marks a run folder or a prepared folder as encrypted
  (``encryption.json``, the one plaintext file) and reads and writes the files
  under it; :func:`shoestring.io.atomic_write_bytes` and
  :func:`shoestring.io.read_bytes` go through it, so every producer and reader
  of a folder encrypts and decrypts by construction.

``cryptography`` is imported only when a file is actually encrypted or
decrypted, so plain folders and ``shoestring --help`` never load it.
"""

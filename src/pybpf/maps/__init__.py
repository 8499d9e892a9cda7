"""Maps: the one ``Map`` class, batch operations, the value codec and mmap views."""

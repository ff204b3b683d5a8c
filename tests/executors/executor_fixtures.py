"""Names of the images the executor tests score (the fixtures are in this folder's conftest.py)."""

PHOTOS = ("obama_2.jpg", "obama_3.jpg")  # the same person as the reference photo, obama_1
DEFECTIVE = ("someone_else", "text", "blurred", "truncated")

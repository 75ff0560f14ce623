"""InkLinkOS data layer: where the studio's database lives, its models and its migrations."""

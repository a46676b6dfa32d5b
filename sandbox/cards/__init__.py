"""Virtual EMV cards for the vpcd virtual reader: ``guichet sandbox card --profile NAME``."""

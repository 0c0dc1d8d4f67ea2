"""The stages of CPRFA: what each trains and how it is evaluated."""

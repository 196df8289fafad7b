"""What makes a dataset that is missing (the embedded `synthetic` set): above data/ and models/,
so data/ never imports a model."""

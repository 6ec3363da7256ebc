"""One thin Prefect task per stage: load inputs, call one ``arcore`` function, commit outputs."""

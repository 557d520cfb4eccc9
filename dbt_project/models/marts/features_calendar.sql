{#- features.md item 9: minutes since the weekly open (Sunday 17:00
    America/New_York), weekend approach flag, gap to the previous bar. -#}
{{ bqx_mart_config() }}

with

{{ bqx_tail_inputs(lookback=0) }},

local_times as (

    select
        pair,
        bar_start_at,
        gap_minutes,
        {{ bqx_local_time('bar_start_at', 'America/New_York') }} as bar_start_ny,
        {{ bqx_local_time('bar_start_at', 'UTC') }} as bar_start_utc
    from inputs
    where is_output

),

weekly_opens as (

    select
        *,
        {{ bqx_from_local_time(
            "date_trunc('week', bar_start_ny + interval '7 hours') - interval '7 hours'",
            'America/New_York'
        ) }} as week_open_at
    from local_times

)

select
    pair,
    bar_start_at,
    bar_start_at + interval '1 minute' as event_timestamp,
    {{ bqx_minutes_between('week_open_at', 'bar_start_at') }} as minutes_since_open,
    (
        (extract(dow from bar_start_utc) = 5 and extract(hour from bar_start_utc) >= 20)
        or extract(dow from bar_start_utc) = 6
    ) as is_weekend_approach,
    gap_minutes
from weekly_opens

with

source as (

    select * from {{ source('raw', 'candles_m1') }}
    where pair in ({{ bqx_pairs_sql() }})

),

renamed as (

    select
        -- ids
        pair,

        -- numerics
        cast(open as {{ bqx_double() }}) as open_price,
        cast(high as {{ bqx_double() }}) as high_price,
        cast(low as {{ bqx_double() }}) as low_price,
        cast(close as {{ bqx_double() }}) as close_price,
        cast(round(open * 1000000) as bigint) as open_points,
        cast(round(high * 1000000) as bigint) as high_points,
        cast(round(low * 1000000) as bigint) as low_points,
        cast(round(close * 1000000) as bigint) as close_points,
        cast(volume as bigint) as volume,
        source as source_name,

        -- timestamps
        bar_start as bar_start_at,
        ingested_at

    from source

)

select * from renamed
